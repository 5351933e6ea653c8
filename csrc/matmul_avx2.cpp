// AVX2 variants of the compressed-matmul kernels; compiled with -mavx2 -mbmi2 -mfma and called only
// after a CPU check. Per batch lane they perform exactly the scalar reference's operations in the
// same order (matmul_kernels.h); the vectors run across batch lanes or table entries.
#include <immintrin.h>

#include <algorithm>
#include <cmath>

#include "bitops.h"
#include "matmul_kernels.h"

namespace sc {

namespace {

// Bits [pos, pos + width) (width <= 8); a plain byte load when aligned.
inline uint32_t key_at(const uint64_t* bits, int64_t pos, int width, bool aligned) {
    if (aligned && width == 8) return reinterpret_cast<const uint8_t*>(bits)[pos >> 3];
    return uint32_t(read_bits(bits, pos, width));
}

// Subset-sum table of x[0 .. width) over 256 entries (entries past 2^width unused).
inline void build_table_single(const float* x, int width, float* table) {
    table[0] = 0.0f;
    for (int i = 0; i < width; ++i) {
        const int half = 1 << i;
        if (half < 8) {
            for (int k = 0; k < half; ++k) table[k | half] = table[k] + x[i];
        } else {
            const __m256 xi = _mm256_set1_ps(x[i]);
            for (int k = 0; k < half; k += 8)
                _mm256_storeu_ps(table + half + k, _mm256_add_ps(_mm256_loadu_ps(table + k), xi));
        }
    }
}

// Batch 1, one (row, group) segment: eight kept weights per step, their x gathered and their values
// permuted out of the pattern table (gathered too when it spans more than two vectors).
float sparse_segment_gather(const SparsePlan& plan, int64_t k0, int64_t k1, const float* x, const float* values) {
    const int q = plan.q;
    const __m256 table_lo = _mm256_load_ps(values);
    const __m256 table_hi = q == 4 ? _mm256_load_ps(values + 8) : table_lo;
    const __m256i low = _mm256_set1_epi32((1 << q) - 1);
    const __m128i shift = _mm_cvtsi32_si128(q);
    __m256 acc = _mm256_setzero_ps();
    int64_t k = k0;
    for (; k + 8 <= k1; k += 8) {
        const __m256i e = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(plan.entries + k)));
        __m256i col = e, code;
        if (plan.codes) {
            code = _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(plan.codes + k)));
        } else {
            col = _mm256_srl_epi32(e, shift);
            code = _mm256_and_si256(e, low);
        }
        __m256 v;
        if (q <= 3) {
            v = _mm256_permutevar8x32_ps(table_lo, code);
        } else if (q == 4) {  // bit 3 of the code, moved to the sign bit, picks the upper half
            v = _mm256_blendv_ps(_mm256_permutevar8x32_ps(table_lo, code), _mm256_permutevar8x32_ps(table_hi, code),
                                 _mm256_castsi256_ps(_mm256_slli_epi32(code, 28)));
        } else {
            v = _mm256_i32gather_ps(values, code, 4);
        }
        acc = _mm256_fmadd_ps(v, _mm256_i32gather_ps(x, col, 4), acc);
    }
    alignas(32) float lanes[8];
    _mm256_store_ps(lanes, acc);
    for (int i = 0; k < k1; ++k, ++i) lanes[i] = std::fma(values[plan.code(k)], x[plan.column(k)], lanes[i]);
    // The horizontal sum in sparse_lanes_sum's order: halves, then pairs, then the last two.
    const __m128 h = _mm_add_ps(_mm256_castps256_ps128(_mm256_load_ps(lanes)), _mm256_extractf128_ps(_mm256_load_ps(lanes), 1));
    const __m128 pairs = _mm_add_ps(h, _mm_movehl_ps(h, h));
    return _mm_cvtss_f32(_mm_add_ss(pairs, _mm_shuffle_ps(pairs, pairs, 1)));
}

// One chunk of NB vectors of batch lanes for rows [r0, r1). The columns are walked in panels whose
// slice of x stays in L2 while every row of the range uses it; each row's partial sums, result,
// position and group survive from panel to panel in `state` / `cursor`. A group is closed (y += s)
// as soon as its last entry is consumed, so the order of operations per lane is exactly the
// reference's: one fma chain per group in column order, then y += s, groups in order.
template <int NB, bool kPacked>
void sparse_chunk(const MatmulWeight& w, const SparsePlan& plan, int64_t r0, int64_t r1, const MatmulInput& in,
                  int64_t chunk, std::vector<float>& state, std::vector<int64_t>& cursor) {
    constexpr int64_t width = NB * kLanes;
    const int q = w.q(), low = (1 << q) - 1;
    const int64_t groups = w.scales.groups, cols = w.cols, rows = r1 - r0;
    const uint16_t* entries = plan.entries;
    const uint8_t* codes = plan.codes;
    const float* x_chunk = in.x_cols + chunk * kChunkLanes * cols;  // [cols][width]
    const int64_t panel = std::max<int64_t>(64, (int64_t(64) << 10) / width);  // 256 KiB of x
    state.assign(size_t(rows * 2 * width), 0.0f);
    cursor.assign(size_t(2 * rows), 0);  // per row: next entry, current group
    for (int64_t r = 0; r < rows; ++r) cursor[size_t(2 * r)] = plan.seg[(r0 + r) * groups];
    alignas(32) float values[256];
    for (int64_t c_end = std::min(cols, panel);; c_end = std::min(cols, c_end + panel)) {
        for (int64_t r = 0; r < rows; ++r) {
            const int64_t* seg = plan.seg + (r0 + r) * groups;
            const float* alpha = w.scales.scales + (r0 + r) * groups * q;
            float* sums = state.data() + r * 2 * width;
            float* ys = sums + width;
            int64_t k = cursor[size_t(2 * r)], g = cursor[size_t(2 * r + 1)];
            if (g == groups) continue;  // row complete
            __m256 acc[NB];
            for (int b = 0; b < NB; ++b) acc[b] = _mm256_loadu_ps(sums + b * kLanes);
            pattern_values(alpha + g * q, q, values);
            for (;;) {
                const int64_t group_end = seg[g + 1];
                bool panel_done = false;
                for (; k < group_end; ++k) {
                    const uint32_t e = entries[k];
                    const int64_t col = kPacked ? e >> q : e;
                    if (col >= c_end) {
                        panel_done = true;
                        break;
                    }
                    const __m256 v = _mm256_broadcast_ss(values + (kPacked ? int(e) & low : codes[k]));
                    const float* xp = x_chunk + col * width;
                    for (int b = 0; b < NB; ++b) acc[b] = _mm256_fmadd_ps(v, _mm256_loadu_ps(xp + b * kLanes), acc[b]);
                }
                if (panel_done) break;
                for (int b = 0; b < NB; ++b) {  // group g complete: y += s
                    _mm256_storeu_ps(ys + b * kLanes, _mm256_add_ps(_mm256_loadu_ps(ys + b * kLanes), acc[b]));
                    acc[b] = _mm256_setzero_ps();
                }
                if (++g == groups) break;
                pattern_values(alpha + g * q, q, values);
            }
            for (int b = 0; b < NB; ++b) _mm256_storeu_ps(sums + b * kLanes, acc[b]);
            cursor[size_t(2 * r)] = k;
            cursor[size_t(2 * r + 1)] = g;
        }
        if (c_end == cols) break;
    }
    const int64_t lane0 = chunk * kChunkLanes;
    for (int64_t r = 0; r < rows; ++r)
        for (int64_t l = 0; l < width && lane0 + l < in.batch; ++l)
            in.out[(lane0 + l) * w.rows + r0 + r] = state[size_t(r * 2 * width + width + l)];
}

template <bool kPacked>
void sparse_chunks(const MatmulWeight& w, const SparsePlan& plan, int64_t r0, int64_t r1, const MatmulInput& in) {
    thread_local std::vector<float> state;
    thread_local std::vector<int64_t> cursor;
    for (int64_t chunk = 0; chunk * kChunkBlocks < in.blocks; ++chunk) {
        switch (std::min<int64_t>(kChunkBlocks, in.blocks - chunk * kChunkBlocks)) {
            case 1: sparse_chunk<1, kPacked>(w, plan, r0, r1, in, chunk, state, cursor); break;
            case 2: sparse_chunk<2, kPacked>(w, plan, r0, r1, in, chunk, state, cursor); break;
            case 3: sparse_chunk<3, kPacked>(w, plan, r0, r1, in, chunk, state, cursor); break;
            case 4: sparse_chunk<4, kPacked>(w, plan, r0, r1, in, chunk, state, cursor); break;
            case 5: sparse_chunk<5, kPacked>(w, plan, r0, r1, in, chunk, state, cursor); break;
            case 6: sparse_chunk<6, kPacked>(w, plan, r0, r1, in, chunk, state, cursor); break;
            case 7: sparse_chunk<7, kPacked>(w, plan, r0, r1, in, chunk, state, cursor); break;
            default: sparse_chunk<8, kPacked>(w, plan, r0, r1, in, chunk, state, cursor); break;
        }
    }
}

}  // namespace

void lut_tile_avx2(const MatmulWeight& w, const TileBits& tile, const MatmulInput& in, std::vector<float>& scratch) {
    const int q = w.q();
    const int64_t rows = tile.r1 - tile.r0, cols = w.cols;
    const bool aligned = cols % 8 == 0;
    if (in.batch == 1) {
        scratch.assign(size_t(rows * (2 + q) + 256 + 8), 0.0f);
        float* y = scratch.data();
        float* acc_k = y + rows;
        float* acc_p = acc_k + rows;
        float* table = acc_p + rows * q;
        for (int64_t g = 0; g < w.scales.groups; ++g) {
            int64_t c0, c1;
            group_columns(w.scales, g, c0, c1);
            std::fill(acc_k, acc_k + rows * (1 + q), 0.0f);
            for (int64_t c = c0; c < c1; c += 8) {
                const int width = int(std::min<int64_t>(8, c1 - c));
                build_table_single(in.x + c, width, table);
                for (int64_t r = 0; r < rows; ++r) {
                    const int64_t pos = r * cols + c;
                    const uint32_t m = key_at(tile.mask.data(), pos, width, aligned);
                    acc_k[r] = acc_k[r] + table[m];
                    for (int p = 0; p < q; ++p)
                        acc_p[r * q + p] = acc_p[r * q + p] + table[m & key_at(tile.plane(p), pos, width, aligned)];
                }
            }
            lut_close_group(w, tile, g, acc_k, acc_p, y);
        }
        for (int64_t r = 0; r < rows; ++r) in.out[tile.r0 + r] = y[r];
        return;
    }
    // Batch lanes: every table entry and accumulator is a vector of kLanes batch elements.
    scratch.assign(size_t(rows * (2 + q) + 256) * kLanes, 0.0f);
    float* y = scratch.data();
    float* acc_k = y + rows * kLanes;
    float* acc_p = acc_k + rows * kLanes;
    float* table = acc_p + rows * q * kLanes;
    const __m256 two = _mm256_set1_ps(2.0f);
    for (int64_t blk = 0; blk < in.blocks; ++blk) {
        const float* xt = in.xt + blk * cols * kLanes;
        std::fill(y, y + rows * kLanes, 0.0f);
        for (int64_t g = 0; g < w.scales.groups; ++g) {
            int64_t c0, c1;
            group_columns(w.scales, g, c0, c1);
            std::fill(acc_k, acc_k + rows * (1 + q) * kLanes, 0.0f);
            for (int64_t c = c0; c < c1; c += 8) {
                const int width = int(std::min<int64_t>(8, c1 - c));
                _mm256_storeu_ps(table, _mm256_setzero_ps());
                for (int i = 0; i < width; ++i) {
                    const __m256 xi = _mm256_loadu_ps(xt + (c + i) * kLanes);
                    for (int k = 0; k < (1 << i); ++k)
                        _mm256_storeu_ps(table + (k | (1 << i)) * kLanes,
                                         _mm256_add_ps(_mm256_loadu_ps(table + k * kLanes), xi));
                }
                for (int64_t r = 0; r < rows; ++r) {
                    const int64_t pos = r * cols + c;
                    const uint32_t m = key_at(tile.mask.data(), pos, width, aligned);
                    float* ak = acc_k + r * kLanes;
                    _mm256_storeu_ps(ak, _mm256_add_ps(_mm256_loadu_ps(ak), _mm256_loadu_ps(table + m * kLanes)));
                    for (int p = 0; p < q; ++p) {
                        float* ap = acc_p + (r * q + p) * kLanes;
                        const uint32_t key = m & key_at(tile.plane(p), pos, width, aligned);
                        _mm256_storeu_ps(ap, _mm256_add_ps(_mm256_loadu_ps(ap), _mm256_loadu_ps(table + key * kLanes)));
                    }
                }
            }
            for (int64_t r = 0; r < rows; ++r) {
                const float* alpha = w.scales.scales + ((tile.r0 + r) * w.scales.groups + g) * q;
                __m256 yr = _mm256_loadu_ps(y + r * kLanes);
                const __m256 ak = _mm256_loadu_ps(acc_k + r * kLanes);
                for (int p = 0; p < q; ++p) {
                    __m256 t = _mm256_mul_ps(two, _mm256_loadu_ps(acc_p + (r * q + p) * kLanes));
                    t = _mm256_sub_ps(t, ak);
                    t = _mm256_mul_ps(t, _mm256_set1_ps(alpha[p]));
                    yr = _mm256_add_ps(yr, t);
                }
                _mm256_storeu_ps(y + r * kLanes, yr);
            }
        }
        alignas(32) float lane[kLanes];
        for (int64_t r = 0; r < rows; ++r) {
            _mm256_store_ps(lane, _mm256_loadu_ps(y + r * kLanes));
            for (int64_t l = 0; l < kLanes && blk * kLanes + l < in.batch; ++l)
                in.out[(blk * kLanes + l) * w.rows + tile.r0 + r] = lane[l];
        }
    }
}

void sparse_rows_avx2(const MatmulWeight& w, const SparsePlan& plan, int64_t r0, int64_t r1, const MatmulInput& in) {
    const int q = w.q();
    const int64_t groups = w.scales.groups;
    if (in.batch == 1) {
        alignas(32) float values[256];
        for (int64_t r = r0; r < r1; ++r) {
            float y = 0.0f;
            for (int64_t g = 0; g < groups; ++g) {
                const float* alpha = w.scales.scales + (r * groups + g) * q;
                const int64_t k0 = plan.seg[r * groups + g], k1 = plan.seg[r * groups + g + 1];
                if (q == 1) {
                    y = y + sparse_signed_sum(plan.entries, k0, k1, in.x_signed) * alpha[0];
                    continue;
                }
                pattern_values(alpha, q, values);
                y = y + sparse_segment_gather(plan, k0, k1, in.x, values);
            }
            in.out[r] = y;
        }
        return;
    }
    if (plan.codes)
        sparse_chunks<false>(w, plan, r0, r1, in);
    else
        sparse_chunks<true>(w, plan, r0, r1, in);
}

}  // namespace sc
