#include "matmul_kernels.h"

#include <algorithm>
#include <cmath>

#include "bitops.h"

namespace sc {

bool lut_supported(const MatmulWeight& w) {
    return w.scales.groups == 1 || w.scales.group_size % 8 == 0;
}

void lut_rows_scalar(const MatmulWeight& w, const BitRows& bits, const MatmulInput& in, int64_t block0, int64_t block1,
                     std::vector<float>& scratch) {
    const int q = w.q();
    const int64_t rows = bits.r1 - bits.r0, cols = w.cols;
    // scratch: y[rows], accK[rows], accP[rows * q], table[256]
    scratch.assign(size_t(rows * (2 + q) + 256), 0.0f);
    float* y = scratch.data();
    float* acc_k = y + rows;
    float* acc_p = acc_k + rows;
    float* table = acc_p + rows * q;
    const int64_t lane_end = std::min(in.batch, block1 * kLanes);
    for (int64_t b = block0 * kLanes; b < lane_end; ++b) {
        const float* x = in.x + b * cols;
        std::fill(y, y + rows, 0.0f);
        for (int64_t g = 0; g < w.scales.groups; ++g) {
            int64_t c0, c1;
            group_columns(w.scales, g, c0, c1);
            std::fill(acc_k, acc_k + rows * (1 + q), 0.0f);
            for (int64_t c = c0; c < c1; c += 8) {
                const int width = int(std::min<int64_t>(8, c1 - c));
                subset_sums(x + c, width, table);
                for (int64_t r = 0; r < rows; ++r) {
                    const int64_t pos = bits.bit0 + r * cols + c;
                    const uint64_t m = read_bits(bits.mask, pos, width);
                    acc_k[r] = acc_k[r] + table[m];
                    for (int p = 0; p < q; ++p)
                        acc_p[r * q + p] = acc_p[r * q + p] + table[m & read_bits(bits.plane(p), pos, width)];
                }
            }
            lut_close_group(w, bits, g, acc_k, acc_p, y);
        }
        for (int64_t r = 0; r < rows; ++r) in.out[b * w.rows + bits.r0 + r] = y[r];
    }
}

void sparse_rows_scalar(const MatmulWeight& w, const SparsePlan& plan, int64_t r0, int64_t r1, const MatmulInput& in) {
    const int q = w.q();
    const int64_t groups = w.scales.groups, cols = w.cols;
    float values[256];
    for (int64_t r = r0; r < r1; ++r) {
        for (int64_t b = 0; b < in.batch; ++b) {
            const float* x = in.x + b * cols;
            float y = 0.0f;
            for (int64_t g = 0; g < groups; ++g) {
                const float* alpha = w.scales.alpha(r, g);
                const int64_t k0 = plan.seg[r * groups + g], k1 = plan.seg[r * groups + g + 1];
                pattern_values(alpha, w.scales.beta(r, g), q, values);
                if (in.batch == 1 && sparse_signed_path(w)) {
                    y = y + sparse_signed_sum(plan.entries, k0, k1, in.x_signed) * alpha[0];
                    continue;
                }
                if (in.batch == 1) {
                    float lanes[8] = {0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f};
                    for (int64_t k = k0; k < k1; ++k)
                        lanes[(k - k0) & 7] = std::fma(values[plan.code(k)], x[plan.column(k)], lanes[(k - k0) & 7]);
                    y = y + sparse_lanes_sum(lanes);
                    continue;
                }
                const int64_t chunk = b / kChunkLanes;
                const int sets = sparse_sets(std::min<int64_t>(kChunkBlocks, in.blocks - chunk * kChunkBlocks));
                float s[4] = {0.0f, 0.0f, 0.0f, 0.0f};
                for (int64_t k = k0; k < k1; ++k) {
                    float& acc = s[(k - k0) % sets];
                    acc = std::fma(values[plan.code(k)], x[plan.column(k)], acc);
                }
                y = y + sparse_sets_sum(s, sets);
            }
            in.out[b * w.rows + r] = y;
        }
    }
}

}  // namespace sc
