#include "lowrank_mask.h"

#include <algorithm>
#include <stdexcept>
#include <vector>

#include "bitops.h"
#include "cpu_dispatch.h"
#include "kernel_table.h"
#include "parallel.h"

namespace sc {

void check_lowrank_geometry(const LowRankGeometry& geo) {
    if (geo.rows < 1 || geo.cols < 1 || geo.rows > (int64_t(1) << 32) || geo.cols > (int64_t(1) << 32) ||
        geo.rows * geo.cols > (int64_t(1) << 48))
        throw std::invalid_argument("low-rank mask: rows and cols must be positive with rows * cols at most 2^48");
    if (geo.tile_rows < 1 || geo.tile_cols < 1)
        throw std::invalid_argument("low-rank mask: tile sizes must be positive");
    if (geo.rank < 1 || geo.rank > 64) throw std::invalid_argument("low-rank mask: rank must be between 1 and 64");
}

void lowrank_row_scalar(const LowRankGeometry& geo, const uint64_t* left, const uint64_t* right, int64_t i,
                        uint64_t* row_out) {
    std::fill(row_out, row_out + geo.row_words(), uint64_t(0));
    for_each_selecting_block(geo, left, i, [&](uint64_t sel, int64_t a, int64_t c0, int64_t c1) {
        for (int64_t w = c0 >> 6; w <= (c1 - 1) >> 6; ++w) row_out[w] |= lowrank_block_word(geo, sel, right, a, w, c0, c1);
    });
}

void lowrank_row(const LowRankGeometry& geo, const uint64_t* left, const uint64_t* right, int64_t i,
                 uint64_t* row_out) {
    kernels().lowrank_row(geo, left, right, i, row_out);
}

void lowrank_decode(const LowRankGeometry& geo, const uint64_t* left, const uint64_t* right, uint64_t* out) {
    check_lowrank_geometry(geo);
    const int64_t words = geo.row_words();
    const int64_t groups = (geo.rows + 63) / 64;  // 64 rows start on a word boundary of the output
    std::fill(out, out + (geo.rows * geo.cols + 63) / 64, uint64_t(0));
    ExceptionCollector errors;
#pragma omp parallel num_threads(max_threads())
    {
        std::vector<uint64_t> row;
#pragma omp for schedule(static)
        for (int64_t g = 0; g < groups; ++g) errors.run([&] {
            row.resize(size_t(words));
            for (int64_t i = g * 64; i < std::min(geo.rows, g * 64 + 64); ++i) {
                lowrank_row(geo, left, right, i, row.data());
                const int64_t base = i * geo.cols;
                for (int64_t w = 0; w < words; ++w)
                    or_bits(out, base + 64 * w, row[size_t(w)], int(std::min<int64_t>(64, geo.cols - 64 * w)));
            }
        });
    }
    errors.rethrow();
}

}  // namespace sc
