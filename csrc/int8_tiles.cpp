#include "int8_tiles.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <stdexcept>

#include "bitops.h"
#include "kernel_table.h"
#include "matmul_kernels.h"
#include "parallel.h"

namespace sc {

namespace {

int64_t padded_cols(const LutInt8Weight& w) { return w.col_blocks * kLut8Cols; }

// The bit pattern (bit p from plane p) and keep bit of row r, column c.
inline int pattern_at(const LutInt8Weight& w, int64_t r, int64_t c, bool& kept) {
    const uint32_t* words = w.block(r / kLut8Rows, c / kLut8Cols) + r % kLut8Rows;
    const int t = int(c % kLut8Cols);
    kept = w.all_kept ? c < w.cols : (words[0] >> t) & 1u;
    int code = 0;
    for (int p = 0; p < w.q; ++p) code |= int((LutInt8Weight::plane_words(words, w.mask_planes(), p)[0] >> t) & 1u) << p;
    return code;
}

// Chunks the batch is cut into: enough items for every thread to take several (8 per thread), but
// chunks of at least 64 lanes, over which a tile's decode is still cheap.
int64_t batch_chunks(int64_t tiles, int64_t batch, int threads) {
    const int64_t wanted = ceil_div(8 * int64_t(threads), tiles);
    return std::max<int64_t>(1, std::min(wanted, batch / 64));
}

}  // namespace

bool int8_tiles_supported(const LutInt8Weight& w) { return w.q <= kTileMaxBits; }

void build_int8_tile_values(const LutInt8Weight& w, Int8TileValues& out) {
    if (!int8_tiles_supported(w)) throw std::invalid_argument("the int8-tile kernel supports at most 4 bits per weight");
    const int q = w.q;
    out.rows = w.rows;
    out.cols = w.cols;
    out.groups = w.groups;
    out.q = q;
    out.padded_rows = ceil_div(w.rows, kTileRows) * kTileRows;
    out.tables.assign(size_t(w.row_blocks * w.groups * 256), 0);
    out.scale.assign(size_t(w.groups * out.padded_rows), 0.0f);
    out.sum.assign(size_t(w.groups * out.padded_rows), 0);
    ExceptionCollector errors;
#pragma omp parallel for num_threads(max_threads()) schedule(static)
    for (int64_t r = 0; r < w.rows; ++r) errors.run([&] {
        for (int64_t g = 0; g < w.groups; ++g) {
            // the dequantised value of every pattern (dequant.h's formula)
            float alpha[kTileMaxBits + 1], values[16];
            for (int p = 0; p <= q; ++p) alpha[p] = w.scale(r / kLut8Rows, g, p, r % kLut8Rows);  // alpha_0 .. alpha_{q-1}, beta
            pattern_values(alpha, w.offsets ? alpha + q : nullptr, q, values);
            float peak = 0.0f;
            for (int k = 0; k < (1 << q); ++k) peak = std::max(peak, std::fabs(values[k]));
            // a uniform grid: every value an integer multiple of alpha_0 that fits int8, stored exactly
            const float unit = std::fabs(alpha[0]);
            bool grid = unit > 0.0f;
            for (int k = 0; grid && k < (1 << q); ++k) {
                const float n = values[k] / unit, rounded = std::nearbyint(n);
                grid = std::fabs(n - rounded) <= 1e-4f * std::max(1.0f, std::fabs(rounded)) && std::fabs(rounded) <= 127.0f;
            }
            const float step = grid ? unit : peak / 127.0f;
            const float inv = step > 0.0f ? 1.0f / step : 0.0f;
            int8_t* table = out.table(r, g);
            for (int k = 0; k < (1 << q); ++k) {
                table[k] = clamp_int8(grid ? std::lrint(values[k] / unit) : std::lrint(values[k] * inv));
            }
            out.scale[size_t(g * out.padded_rows + r)] = step;
        }
        for (int64_t c = 0; c < w.cols; ++c) {
            bool kept;
            const int code = pattern_at(w, r, c, kept);
            const int64_t g = (c / kLut8Cols) / w.group_blocks;
            if (kept) out.sum[size_t(g * out.padded_rows + r)] += out.table(r, g)[code];
        }
    });
    errors.rethrow();
}

void decode_int8_tile_scalar(const LutInt8Weight& w, const Int8TileValues& v, int64_t r0, int8_t* tile) {
    const int64_t kpad = padded_cols(w);
    for (int64_t i = 0; i < kTileRows; ++i) {
        const int64_t r = r0 + i;
        for (int64_t c = 0; c < kpad; ++c) {
            int8_t value = 0;
            if (r < w.rows) {
                bool kept;
                const int code = pattern_at(w, r, c, kept);
                if (kept) value = v.table(r, (c / kLut8Cols) / w.group_blocks)[code];
            }
            tile[(c / 4) * (kTileRows * 4) + i * 4 + c % 4] = value;
        }
    }
}

void int8_tile_product_scalar(const LutInt8Weight& w, const Int8TileValues& v, int64_t r0, const int8_t* tile,
                              const uint8_t* xq, const float* x_scale, int64_t batch, float* out) {
    const int64_t kpad = padded_cols(w), group_cols = w.group_blocks * kLut8Cols;
    for (int64_t b = 0; b < batch; ++b)
        for (int64_t i = 0; i < kTileRows && r0 + i < w.rows; ++i) {
            float y = 0.0f;  // the first group's term is y itself, as the AVX-512 kernel stores it
            for (int64_t g = 0; g < w.groups; ++g) {
                int32_t acc = 0;
                for (int64_t c = g * group_cols; c < std::min(kpad, (g + 1) * group_cols); ++c)
                    acc += int32_t(tile[(c / 4) * (kTileRows * 4) + i * 4 + c % 4]) * int32_t(xq[b * kpad + c]);
                float t = float(acc - 128 * v.group_sum(g)[r0 + i]);
                t = t * x_scale[b * w.groups + g];
                t = t * v.group_scale(g)[r0 + i];
                y = g == 0 ? t : y + t;
            }
            out[b * w.rows + r0 + i] = y;
        }
}

void quantize_int8_row_scalar(const float* x, int64_t cols, int64_t group_cols, uint8_t* xq, float* scale) {
    for (int64_t c0 = 0, g = 0; c0 < cols; c0 += group_cols, ++g) {
        const int64_t c1 = std::min(cols, c0 + group_cols);
        float peak = 0.0f;
        for (int64_t c = c0; c < c1; ++c) peak = std::max(peak, std::fabs(x[c]));
        const float inv = int8_inverse(peak);
        scale[g] = peak / 127.0f;
        for (int64_t c = c0; c < c1; ++c) xq[c] = uint8_t(clamp_int8(std::lrint(x[c] * inv)) + 128);
    }
}

void int8_tiles_matmul(const LutInt8Weight& w, const Int8TileValues& v, const float* x, int64_t batch, float* out) {
    const int64_t kpad = padded_cols(w), group_cols = w.group_blocks * kLut8Cols;
    // x per batch row and scale group to unsigned bytes around 128 (padding columns are 128: their
    // weights are 0)
    std::vector<uint8_t> xq(size_t(batch * kpad), 128);
    std::vector<float> x_scale(static_cast<size_t>(batch * w.groups));
    const Kernels& k = kernels();
#pragma omp parallel for num_threads(batch * w.cols < (int64_t(1) << 16) ? 1 : max_threads()) schedule(static)
    for (int64_t b = 0; b < batch; ++b)
        k.quantize_int8_row(x + b * w.cols, w.cols, group_cols, xq.data() + b * kpad, x_scale.data() + b * w.groups);
    // Work items are a tile's rows times a chunk of batch lanes, tile by tile: a small layer has few
    // tiles (384 rows: 6), and a late or preempted thread would leave the others idle at the end.
    // A thread decodes a tile only when its next item is on another tile than its last one.
    const int64_t tiles = ceil_div(w.rows, kTileRows);
    const int64_t chunks = batch_chunks(tiles, batch, max_threads());
    const int64_t chunk_lanes = ceil_div(ceil_div(batch, chunks), 4) * 4;
    const int64_t lane_chunks = ceil_div(batch, chunk_lanes), items = tiles * lane_chunks;
    ExceptionCollector errors;
#pragma omp parallel num_threads(max_threads())
    {
        // the tile starts on a cache line: each of its vector loads then reads one line, not two
        std::vector<int8_t> buffer(size_t(kTileRows * kpad) + 64);
        int8_t* tile = buffer.data() + (64 - reinterpret_cast<uintptr_t>(buffer.data()) % 64) % 64;
        int64_t decoded = -1;
#pragma omp for schedule(dynamic, 1)
        for (int64_t i = 0; i < items; ++i) errors.run([&] {
            const int64_t t = i / lane_chunks, b0 = (i % lane_chunks) * chunk_lanes;
            if (t != decoded) {
                k.decode_int8_tile(w, v, t * kTileRows, tile);
                decoded = t;
            }
            k.int8_tile_product(w, v, t * kTileRows, tile, xq.data() + b0 * kpad, x_scale.data() + b0 * w.groups,
                                std::min(chunk_lanes, batch - b0), out + b0 * w.rows);
        });
    }
    errors.rethrow();
}

}  // namespace sc
