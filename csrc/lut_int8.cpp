#include "lut_int8.h"

#include <algorithm>
#include <cmath>

#include "bitops.h"
#include "kernel_table.h"
#include "matmul.h"
#include "matmul_kernels.h"
#include "parallel.h"

namespace sc {

bool lut_int8_supported(const MatmulWeight& w) {
    return w.scales.group_size >= w.cols || w.scales.group_size % kLut8Cols == 0;
}

namespace {

// Whether every alpha of the weight is exactly a float16 value.
bool alphas_are_half(const MatmulWeight& w) {
    uint16_t h;
    const float* alphas = w.scales.scales;  // [row][group][plane]
    return std::all_of(alphas, alphas + w.rows * w.scales.groups * w.q(), [&](float a) { return half_of_float(a, h); });
}

}  // namespace

void build_lut_int8_weight(const MatmulWeight& w, LutInt8Weight& out) {
    if (!lut_int8_supported(w))
        throw std::invalid_argument("the int8-table kernel needs scale groups that are whole rows or multiples of 32 columns");
    const int q = w.q();
    out.rows = w.rows;
    out.cols = w.cols;
    out.q = q;
    out.row_blocks = ceil_div(w.rows, kLut8Rows);
    out.col_blocks = ceil_div(w.cols, kLut8Cols);
    out.groups = w.scales.groups;
    out.group_blocks = w.scales.group_size >= w.cols ? out.col_blocks : w.scales.group_size / kLut8Cols;
    out.offsets = w.scales.offsets != nullptr;
    DecodedBits decoded;
    decode_all_bits(w, decoded);
    const uint64_t* mask = decoded.mask_of(w);
    const int64_t total = w.rows * w.cols;
    int64_t kept = 0;
    for (int64_t i = 0; i < total / 64; ++i) kept += popcount64(mask[i]);
    if (total % 64) kept += popcount64(mask[total / 64] & low_mask(int(total % 64)));
    out.all_kept = kept == total;
    out.half_scales = alphas_are_half(w);
    const int mask_planes = out.mask_planes();
    out.words.assign(size_t(out.row_blocks * out.row_block_words()), 0u);
    ExceptionCollector errors;
#pragma omp parallel for num_threads(max_threads()) schedule(static)
    for (int64_t rb = 0; rb < out.row_blocks; ++rb) errors.run([&] {
        for (int64_t i = 0; i < kLut8Rows; ++i) {
            const int64_t r = rb * kLut8Rows + i;
            if (r >= w.rows) break;
            for (int64_t g = 0; g < out.groups; ++g) {
                uint32_t* group = out.group_start(rb, g);
                const int64_t blocks = out.group_block_count(g);
                for (int64_t k = 0; k < blocks; ++k) {
                    const int64_t c0 = (g * out.group_blocks + k) * kLut8Cols;
                    const int width = int(std::min<int64_t>(kLut8Cols, w.cols - c0));
                    uint32_t* dst = group + k * out.block_words() + i;
                    if (mask_planes) dst[0] = uint32_t(read_bits(mask, r * w.cols + c0, width));
                    for (int p = 0; p < q; ++p)
                        dst[(mask_planes + p) * kLut8Rows] = uint32_t(read_bits(decoded.planes[size_t(p)].data(), r * w.cols + c0, width));
                }
                const float* alpha = w.scales.alpha(r, g);
                const float* beta = w.scales.beta(r, g);
                for (int p = 0; p < out.scale_rows(); ++p) out.set_scale(rb, g, p, i, p < q ? alpha[p] : *beta);
            }
        }
    });
    errors.rethrow();
}

void int8_tables_lane_scalar(const LutInt8Weight& w, const float* x, int8_t* lane, float* scale, int32_t* full) {
    const int64_t column_groups = w.col_blocks * 8;
    std::vector<float> sums(size_t(w.group_blocks * 8 * 16));
    for (int64_t g = 0; g < w.groups; ++g) {
        const int64_t cg0 = g * w.group_blocks * 8, cg1 = std::min(column_groups, cg0 + w.group_blocks * 8);
        // float subset sums of the group's 4-column groups (columns past the end count as 0)
        float peak = 0.0f;
        for (int64_t c = cg0; c < cg1; ++c) {
            float v[4];
            for (int i = 0; i < 4; ++i) v[i] = 4 * c + i < w.cols ? x[4 * c + i] : 0.0f;
            float* t = sums.data() + (c - cg0) * 16;
            // T[n] = L[n & 3] + H[n >> 2]: the sums of the low and the high column pair
            const float low[4] = {0.0f, v[0], v[1], v[0] + v[1]}, high[4] = {0.0f, v[2], v[3], v[2] + v[3]};
            for (int n = 0; n < 16; ++n) t[n] = low[n & 3] + high[n >> 2];
            for (int n = 0; n < 16; ++n) peak = std::max(peak, std::fabs(t[n]));
        }
        const float inv = int8_inverse(peak);
        scale[g] = peak / 127.0f;
        full[g] = 0;
        for (int64_t c = cg0; c < cg1; ++c) {
            // column group c of block cb = c / 8 sits in half (c & 1), slot (c % 8) / 2
            int8_t* dst = lane + (c / 8) * kLut8TableBytes + (c & 1) * 64 + ((c % 8) / 2) * 16;
            const float* t = sums.data() + (c - cg0) * 16;
            for (int n = 0; n < 16; ++n) dst[n] = clamp_int8(std::lrint(t[n] * inv));
            full[g] += dst[15];
        }
    }
}

void build_int8_tables(const Kernels& k, const LutInt8Weight& w, const float* x, int64_t batch, Int8Tables& out) {
    out.batch = batch;
    out.col_blocks = w.col_blocks;
    out.groups = w.groups;
    out.entries.resize(size_t(batch * w.col_blocks * kLut8TableBytes));
    out.scale.resize(size_t(batch * w.groups));
    out.full.resize(size_t(batch * w.groups));
    const auto lane_kernel = k.int8_tables_lane;
    ExceptionCollector errors;
#pragma omp parallel for num_threads(batch * w.cols < (int64_t(1) << 15) ? 1 : max_threads()) schedule(static)
    for (int64_t b = 0; b < batch; ++b) errors.run([&] {
        lane_kernel(w, x + b * w.cols, out.entries.data() + b * w.col_blocks * kLut8TableBytes,
                    out.scale.data() + b * w.groups, out.full.data() + b * w.groups);
    });
    errors.rethrow();
}

namespace {

// One lane's rows of row blocks [rb0, rb1) into out (that lane's row of the output).
void lane_rows_scalar(const LutInt8Weight& w, const Int8Tables& t, int64_t lane, int64_t rb0, int64_t rb1,
                      float* out) {
    const int q = w.q;
    const int8_t* tables = t.lane(lane);
    const float* lane_scales = t.lane_scales(lane);
    for (int64_t rb = rb0; rb < rb1; ++rb)
        for (int64_t i = 0; i < kLut8Rows; ++i) {
            const int64_t r = rb * kLut8Rows + i;
            if (r >= w.rows) break;
            float y = 0.0f;
            for (int64_t g = 0; g < w.groups; ++g) {
                int32_t acc_m = 0, acc[kMaxPlanes] = {};
                const int64_t cb1 = std::min(w.col_blocks, (g + 1) * w.group_blocks);
                for (int64_t cb = g * w.group_blocks; cb < cb1; ++cb) {
                    const uint32_t* words = w.block(rb, cb) + i;
                    const int8_t* tab = tables + cb * kLut8TableBytes;
                    // all kept: every bit set, also past the last column, whose table entries add 0
                    const uint32_t m = w.all_kept ? ~0u : words[0];
                    for (int c = 0; c < 8; ++c) {
                        const int8_t* tc = tab + (c & 1) * 64 + (c / 2) * 16;
                        acc_m += tc[(m >> (4 * c)) & 15u];
                        for (int p = 0; p < q; ++p)
                            acc[p] += tc[((m & LutInt8Weight::plane_words(words, w.mask_planes(), p)[0]) >> (4 * c)) & 15u];
                    }
                }
                const float s = lane_scales[g];
                for (int p = 0; p < q; ++p) {
                    float v = float(2 * acc[p] - acc_m);
                    v = v * s;
                    v = v * w.scale(rb, g, p, i);
                    y = y + v;
                }
                if (w.offsets) {
                    float v = float(acc_m);
                    v = v * s;
                    v = v * w.scale(rb, g, q, i);
                    y = y + v;
                }
            }
            out[r] = y;
        }
}

}  // namespace

void lut_int8_rows_scalar(const LutInt8Weight& w, const Int8Tables& t, int64_t b0, int64_t b1, int64_t rb0,
                          int64_t rb1, float* out) {
    for (int64_t b = b0; b < b1; ++b) lane_rows_scalar(w, t, b, rb0, rb1, out + b * w.rows);
}

void lut_int8_matmul(const LutInt8Weight& w, const float* x, int64_t batch, float* out) {
    Int8Tables tables;
    const Kernels& k = kernels();
    build_int8_tables(k, w, x, batch, tables);
    const auto rows_kernel = k.lut_int8_rows;
    // Tasks: a run of row blocks for every lane, so that the run's bits (re-read per pass over a few
    // lanes) stay in cache.
    const int64_t per_task = std::max<int64_t>(1, std::min<int64_t>(16, w.row_blocks / (4 * max_threads())));
    const int64_t row_tasks = ceil_div(w.row_blocks, per_task);
    const int64_t work = w.rows * w.cols * (w.mask_planes() + w.q) * batch / 32;
    ExceptionCollector errors;
#pragma omp parallel for num_threads(work < (int64_t(1) << 13) ? 1 : max_threads()) schedule(dynamic, 1)
    for (int64_t task = 0; task < row_tasks; ++task) errors.run([&] {
        const int64_t rb0 = task * per_task, rb1 = std::min(w.row_blocks, rb0 + per_task);
        rows_kernel(w, tables, 0, batch, rb0, rb1, out);
    });
    errors.rethrow();
}

}  // namespace sc
