#include "matmul.h"

#include <algorithm>
#include <memory>
#include <new>
#include <stdexcept>

#include "bitops.h"
#include "cpu_dispatch.h"
#include "kernel_table.h"
#include "parallel.h"

namespace sc {

namespace {

constexpr int64_t kMaxBatchPerPass = 512;  // bounds the prepared copies of x
constexpr const char* kMaskChanged = "the weight's mask changed while its sparse form was being built";

// The fewest rows a tile should span: a scattered layout's group, which a tile decodes whole
// whenever it overlaps it (tiles of fewer rows decode each group several times; a group straddling
// two tiles is still decoded twice); 1 otherwise.
int64_t group_rows(const MatmulWeight& w, const SliceLayout& layout) {
    if (layout.identity() || layout.group_count() == 0) return 1;
    return (layout.group(0).positions + w.cols - 1) / w.cols;
}

// Rows per tile: about 2^20 weights (bit buffers of 128 KiB per plane), but enough tiles to keep
// every thread busy, and at least group_rows.
int64_t tile_rows(const MatmulWeight& w, const SliceLayout& layout) {
    int64_t r = std::max<int64_t>(8, (int64_t(1) << 20) / std::max<int64_t>(1, w.cols));
    const int64_t balanced = (w.rows + 4 * max_threads() - 1) / (4 * max_threads());
    return std::max(group_rows(w, layout), std::min({r, balanced, int64_t(512)}));
}

// A zeroed float buffer starting on a cache line, so that no vector load of it straddles two lines.
float* line_aligned(std::vector<float>& buf, size_t n) {
    buf.assign(n + 16, 0.0f);
    const uintptr_t at = reinterpret_cast<uintptr_t>(buf.data());
    return buf.data() + ((64 - at % 64) % 64) / sizeof(float);
}

// An uninitialised float array starting on a cache line, for buffers whose every read entry the
// caller writes first (zeroing the batch-1 tables cost as much as filling them).
class RawFloats {
public:
    float* get(size_t n) {
        data_.reset(static_cast<float*>(::operator new(n * sizeof(float), kLine)));
        return data_.get();
    }

private:
    static constexpr std::align_val_t kLine{64};
    struct Free {
        void operator()(float* p) const { ::operator delete(p, kLine); }
    };
    std::unique_ptr<float[], Free> data_;
};

struct PreparedInput {
    std::vector<float> x_signed, xt, x_cols;
    RawFloats tables;  // entries past 2^width of a last, narrow chunk are never read (read_bits masks)
};

void prepare_input(const MatmulWeight& w, MatmulStrategy strategy, const float* x, int64_t batch,
                   PreparedInput& prep, MatmulInput& in) {
    const int64_t cols = w.cols;
    in.x = x;
    in.batch = batch;
    in.blocks = (batch + kLanes - 1) / kLanes;
    in.padded = in.blocks * kLanes;
    if (batch == 1) {
        if (strategy == MatmulStrategy::lut) {  // one table per 8 columns, shared by every row
            const int64_t chunks = (cols + 7) / 8;
            float* tables = prep.tables.get(size_t(chunks * 256));
            for (int64_t c = 0; c < chunks; ++c)
                subset_sums(x + 8 * c, int(std::min<int64_t>(8, cols - 8 * c)), tables + c * 256);
            in.tables = tables;
        }
        if (strategy == MatmulStrategy::sparse && sparse_signed_path(w)) {
            prep.x_signed.resize(size_t(2 * cols + 1));
            prep.x_signed[size_t(2 * cols)] = 0.0f;  // what a partial step adds past its segment
            for (int64_t c = 0; c < cols; ++c) {
                prep.x_signed[size_t(2 * c)] = -x[c];
                prep.x_signed[size_t(2 * c + 1)] = x[c];
            }
            in.x_signed = prep.x_signed.data();
        }
        return;
    }
    if (strategy == MatmulStrategy::sparse) {  // per chunk of lanes [cols][lanes]: a column's lanes together
        float* x_cols = line_aligned(prep.x_cols, size_t(cols * in.padded));
        for (int64_t b = 0; b < batch; ++b) {
            const int64_t chunk = b / kChunkLanes;
            const int64_t width = std::min<int64_t>(kChunkLanes, in.padded - chunk * kChunkLanes);
            float* dst = x_cols + chunk * kChunkLanes * cols + b % kChunkLanes;
            for (int64_t c = 0; c < cols; ++c) dst[c * width] = x[b * cols + c];
        }
        in.x_cols = x_cols;
        return;
    }
    float* xt = line_aligned(prep.xt, size_t(in.blocks * cols * kLanes));  // [block][cols][kLanes]
    for (int64_t b = 0; b < batch; ++b) {
        float* block = xt + (b / kLanes) * cols * kLanes;
        for (int64_t c = 0; c < cols; ++c) block[c * kLanes + b % kLanes] = x[b * cols + c];
    }
    in.xt = xt;
}

// Streaming: each tile of rows is decoded into cache-sized bit buffers, then runs every lane.
void run_lut_streaming(const MatmulWeight& w, const MatmulInput& in) {
    const auto lut_rows = kernels().lut_rows;
    const SliceLayout layout = make_layout(*w.net, w.geo);
    const int64_t rows_per_tile = tile_rows(w, layout);
    const int64_t tiles = (w.rows + rows_per_tile - 1) / rows_per_tile;
    ExceptionCollector errors;
#pragma omp parallel num_threads(max_threads())
    {
        TileBits tile;
        std::vector<uint64_t> band_buf, group_buf;
        std::vector<float> scratch;
#pragma omp for schedule(dynamic, 1)
        for (int64_t t = 0; t < tiles; ++t) errors.run([&] {
            const int64_t r0 = t * rows_per_tile, r1 = std::min(w.rows, r0 + rows_per_tile);
            decode_tile(w, layout, r0, r1, tile, band_buf, group_buf);
            lut_rows(w, tile.view(), in, 0, in.blocks, scratch);
        });
    }
    errors.rethrow();
}

// From decoded bits: tasks are (lanes held in registers at once, block of rows). Larger row blocks
// build each table for more rows; their accumulators (kLutStateBytes) bound them, and there are
// enough tasks for every thread.
// Threads for a product of about `work` elementary steps: one when waking the others would cost
// more than it saves (a small layer at batch 1 runs in microseconds).
[[maybe_unused]] int threads_for(int64_t work) { return work < (int64_t(1) << 12) ? 1 : max_threads(); }

void run_lut_cached(const MatmulWeight& w, const DecodedBits& bits, const MatmulInput& in) {
    constexpr int64_t kLutStateBytes = 1 << 20;
    const Kernels& k = kernels();
    const int64_t lane_step = in.batch == 1 ? 1 : k.lut_blocks(w.q());
    const int64_t lane_tasks = (in.blocks + lane_step - 1) / lane_step;
    const int64_t row_bytes = (2 + w.q()) * lane_step * kLanes * int64_t(sizeof(float));
    const int64_t splits = std::max<int64_t>(1, (4 * max_threads() + lane_tasks - 1) / lane_tasks);
    const int64_t row_step = std::max<int64_t>(8, std::min((w.rows + splits - 1) / splits, kLutStateBytes / row_bytes));
    const int64_t row_tasks = (w.rows + row_step - 1) / row_step;
    ExceptionCollector errors;
#pragma omp parallel num_threads(threads_for(w.rows * w.cols / 8 * (1 + w.q()) * in.blocks))
    {
        std::vector<float> scratch;
#pragma omp for schedule(dynamic, 1)
        for (int64_t t = 0; t < lane_tasks * row_tasks; ++t) errors.run([&] {
            const int64_t lanes = t / row_tasks, r0 = (t % row_tasks) * row_step;
            const int64_t b0 = lanes * lane_step, b1 = std::min(in.blocks, b0 + lane_step);
            k.lut_rows(w, bits.view(w, r0, std::min(w.rows, r0 + row_step)), in, b0, b1, scratch);
        });
    }
    errors.rethrow();
}

void run_sparse(const MatmulWeight& w, const SparsePlan& plan, const MatmulInput& in) {
    // Batches share each slice of x among the rows of a task: larger tasks, fewer passes over x.
    const int64_t rows_per_task = in.batch == 1 ? 32 : 128;
    const int64_t tasks = (w.rows + rows_per_task - 1) / rows_per_task;
    const auto sparse_rows = kernels().sparse_rows;
    ExceptionCollector errors;
#pragma omp parallel for num_threads(threads_for(plan.seg[w.rows * w.scales.groups] * in.blocks)) schedule(dynamic, 1)
    for (int64_t t = 0; t < tasks; ++t) errors.run([&] {
        const int64_t r0 = t * rows_per_task, r1 = std::min(w.rows, r0 + rows_per_task);
        sparse_rows(w, plan, r0, r1, in);
    });
    errors.rethrow();
}

// Columns the sparse form can address: q = 1 packs the sign bit beside the column in 16 bits.
int64_t sparse_max_cols(int q) { return q == 1 ? 32768 : 65536; }

}  // namespace

void compressed_matmul(const MatmulWeight& w, MatmulStrategy strategy, const SparsePlan* plan,
                       const DecodedBits* bits, const float* x, int64_t batch, float* out) {
    if (strategy == MatmulStrategy::lut && !lut_supported(w))
        throw std::invalid_argument("the lookup-table kernel needs scale groups that are whole rows or multiples of 8 columns");
    if (strategy == MatmulStrategy::sparse && (!plan || w.cols > sparse_max_cols(w.q())))
        throw std::invalid_argument("the sparse kernel needs a plan and at most 32768 (q = 1) or 65536 columns");
    PreparedInput prep;
    for (int64_t b0 = 0; b0 < batch; b0 += kMaxBatchPerPass) {
        const int64_t n = std::min(kMaxBatchPerPass, batch - b0);
        // Each pass writes the rows of its batch slice: out is (batch, rows), so the slice is contiguous.
        MatmulInput in;
        prepare_input(w, strategy, x + b0 * w.cols, n, prep, in);
        in.out = out + b0 * w.rows;
        if (strategy == MatmulStrategy::lut && bits)
            run_lut_cached(w, *bits, in);
        else if (strategy == MatmulStrategy::lut)
            run_lut_streaming(w, in);
        else
            run_sparse(w, *plan, in);
    }
}

void decode_rows(const MatmulWeight& w, int64_t r0, int64_t r1, float* out) {
    const SliceLayout layout = make_layout(*w.net, w.geo);
    const int64_t step = std::max(group_rows(w, layout), std::min<int64_t>(tile_rows(w, layout), (r1 - r0 + 2 * max_threads() - 1) / (2 * max_threads())));
    const int64_t tiles = (r1 - r0 + step - 1) / step;
    ExceptionCollector errors;
#pragma omp parallel num_threads(max_threads())
    {
        TileBits tile;
        std::vector<uint64_t> band_buf, group_buf;
        std::vector<const uint64_t*> planes;
#pragma omp for schedule(dynamic, 1)
        for (int64_t t = 0; t < tiles; ++t) errors.run([&] {
            const int64_t a = r0 + t * step, b = std::min(r1, a + step);
            decode_tile(w, layout, a, b, tile, band_buf, group_buf);
            planes.resize(size_t(w.q()));
            for (int p = 0; p < w.q(); ++p) planes[size_t(p)] = tile.plane(p);
            dequant_range(w.scales, planes.data(), tile.mask.data(), a * w.cols, (b - a) * w.cols,
                          out + (a - r0) * w.cols, false);
        });
    }
    errors.rethrow();
}

void decode_row_set(const MatmulWeight& w, const int64_t* rows, int64_t n, float* out) {
    const SliceLayout layout = make_layout(*w.net, w.geo);
    ExceptionCollector errors;
#pragma omp parallel num_threads(threads_for(n * w.cols * w.q() / 8))
    {
        TileBits tile;
        std::vector<uint64_t> band_buf, group_buf;
        std::vector<const uint64_t*> planes(size_t(w.q()));
#pragma omp for schedule(dynamic, 4)
        for (int64_t i = 0; i < n; ++i) errors.run([&] {
            const int64_t r = rows[i];
            decode_tile(w, layout, r, r + 1, tile, band_buf, group_buf);
            for (int p = 0; p < w.q(); ++p) planes[size_t(p)] = tile.plane(p);
            dequant_range(w.scales, planes.data(), tile.mask.data(), r * w.cols, w.cols, out + i * w.cols, false);
        });
    }
    errors.rethrow();
}

void build_sparse_plan(const MatmulWeight& w, std::vector<int64_t>& seg, std::vector<uint16_t>& entries,
                       std::vector<uint8_t>& codes) {
    const int q = w.q();
    const int64_t rows = w.rows, cols = w.cols, groups = w.scales.groups;
    if (cols > sparse_max_cols(q))
        throw std::invalid_argument("the sparse form supports at most 32768 columns for q = 1 and 65536 for q >= 2");
    const SliceLayout layout = make_layout(*w.net, w.geo);
    const int64_t rows_per_tile = tile_rows(w, layout);
    const int64_t tiles = (rows + rows_per_tile - 1) / rows_per_tile;
    seg.assign(size_t(rows * groups + 1), 0);
    ExceptionCollector errors;
    // Pass 1: kept weights per (row, group), from the mask alone; then their offsets.
#pragma omp parallel num_threads(max_threads())
    {
        TileBits tile;
        std::vector<uint64_t> row_buf;
#pragma omp for schedule(dynamic, 1)
        for (int64_t t = 0; t < tiles; ++t) errors.run([&] {
            const int64_t r0 = t * rows_per_tile, r1 = std::min(rows, r0 + rows_per_tile);
            decode_tile_mask(w, r0, r1, tile, row_buf);
            for (int64_t r = r0; r < r1; ++r)
                for (int64_t g = 0; g < groups; ++g) {
                    int64_t c0, c1;
                    group_columns(w.scales, g, c0, c1);
                    int64_t n = 0;
                    for (int64_t c = c0; c < c1; c += 64)
                        n += popcount64(read_bits(tile.mask.data(), (r - r0) * cols + c, int(std::min<int64_t>(64, c1 - c))));
                    seg[size_t(r * groups + g + 1)] = n;
                }
        });
    }
    errors.rethrow();
    for (size_t i = 1; i < seg.size(); ++i) seg[i] += seg[i - 1];
    const bool packed = sparse_packed(cols, q);
    entries.assign(size_t(seg.back()), 0);
    codes.assign(packed ? 0 : size_t(seg.back()), 0);
    // Pass 2: each tile decodes its planes and writes its rows' entries at their offsets.
#pragma omp parallel num_threads(max_threads())
    {
        TileBits tile;
        std::vector<uint64_t> band_buf, group_buf;
#pragma omp for schedule(dynamic, 1)
        for (int64_t t = 0; t < tiles; ++t) errors.run([&] {
            const int64_t r0 = t * rows_per_tile, r1 = std::min(rows, r0 + rows_per_tile);
            decode_tile(w, layout, r0, r1, tile, band_buf, group_buf);
            // The mask is read again here; the arrays may live in a buffer that can change under
            // us (a stream read in place), so the count of pass 1 bounds every write.
            int64_t k = seg[size_t(r0 * groups)];
            const int64_t k_end = seg[size_t(r1 * groups)];
            for (int64_t pos = 0; pos < (r1 - r0) * cols; pos += 64) {
                const int width = int(std::min<int64_t>(64, (r1 - r0) * cols - pos));
                for (uint64_t bits = read_bits(tile.mask.data(), pos, width); bits; bits &= bits - 1, ++k) {
                    if (k >= k_end) throw std::runtime_error(kMaskChanged);
                    const int64_t at = pos + low_bit(bits);
                    int code = 0;
                    for (int p = 0; p < q; ++p) code |= get_bit(tile.plane(p), at) << p;
                    const int64_t col = at % cols;
                    if (packed) {
                        entries[size_t(k)] = uint16_t((col << q) | code);
                    } else {
                        entries[size_t(k)] = uint16_t(col);
                        codes[size_t(k)] = uint8_t(code);
                    }
                }
            }
            if (k != k_end) throw std::runtime_error(kMaskChanged);
        });
    }
    errors.rethrow();
}

int64_t sparse_plan_nbytes(const MatmulWeight& w, int64_t kept) {
    const int64_t seg = w.rows * w.scales.groups + 1;
    return seg * int64_t(sizeof(int64_t)) + kept * int64_t(sizeof(uint16_t) + (sparse_packed(w.cols, w.q()) ? 0 : 1));
}

namespace {

// Words of each decoded plane (and of the expanded mask): the positions and two words of padding.
int64_t decoded_words(const MatmulWeight& w) { return (w.rows * w.cols + 63) / 64 + 2; }

}  // namespace

int64_t decoded_bits_nbytes(const MatmulWeight& w) {
    const int64_t buffers = w.q() + (w.mask.bitmap ? 0 : 1);  // a bitmap mask is read where it is
    return buffers * decoded_words(w) * int64_t(sizeof(uint64_t));
}

void decode_all_bits(const MatmulWeight& w, DecodedBits& out) {
    const SliceLayout layout = make_layout(*w.net, w.geo);
    // Tiles of a multiple of 64 rows start on a word boundary, so no two threads share a word.
    const int64_t rows_per_tile = (tile_rows(w, layout) + 63) / 64 * 64;
    const int64_t tiles = (w.rows + rows_per_tile - 1) / rows_per_tile;
    const size_t words = size_t(decoded_words(w));
    out.rows = w.rows;
    out.cols = w.cols;
    out.planes.assign(size_t(w.q()), std::vector<uint64_t>(words, 0));
    out.mask.assign(w.mask.bitmap ? 0 : words, 0);  // a bitmap is read where it is
    out.bitmap = w.mask.bitmap;
    ExceptionCollector errors;
#pragma omp parallel num_threads(max_threads())
    {
        TileBits tile;
        std::vector<uint64_t> band_buf, group_buf;
#pragma omp for schedule(dynamic, 1)
        for (int64_t t = 0; t < tiles; ++t) errors.run([&] {
            const int64_t r0 = t * rows_per_tile, r1 = std::min(w.rows, r0 + rows_per_tile);
            decode_tile(w, layout, r0, r1, tile, band_buf, group_buf);
            const int64_t n = (r1 - r0) * w.cols;
            for (int p = 0; p < w.q(); ++p) or_bit_range(tile.plane(p), 0, n, out.planes[size_t(p)].data(), r0 * w.cols);
            if (!out.mask.empty()) or_bit_range(tile.mask.data(), 0, n, out.mask.data(), r0 * w.cols);
        });
    }
    errors.rethrow();
}

}  // namespace sc
