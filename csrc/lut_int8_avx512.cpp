// AVX-512 (F, BW, VBMI, VNNI) twin of lut_int8_rows_scalar (see lut_int8.h for the layout).
//
// One zmm holds a block's 16 words of one plane: 16 rows x 32 columns. A word's byte k holds column
// groups 2k (low nibble) and 2k + 1 (high nibble); OR-ing k << 4 into each nibble turns it into an
// index of VPERMB's 64-byte table holding column groups (0, 2, 4, 6) or (1, 3, 5, 7), and VPDPBUSD
// against a vector of ones adds a word's four looked-up bytes (one row's four column groups) into
// that row's int32 accumulator. Per block and plane: three index ops, then per batch lane two VPERMB
// and two VPDPBUSD; lut_int8_lanes(q) lanes share each block's indices. When every weight is kept
// (MASKED false), S[m] is the same for all rows, the lane's sum of all-ones entries, and the mask's
// lookups are skipped: q planes instead of q + 1.
//
// Tables: one zmm is a column group's 16 subset sums, low[n & 3] + high[n >> 2] as in the scalar
// reference, four groups at a time from one load of 16 columns (QuadSums).
#include <immintrin.h>

#include <algorithm>

#include "lut_int8.h"
#include "int8_avx512.h"

namespace sc {

namespace {

constexpr int kIndexOr = 0xEA;  // ternary logic (a & b) | c

// alpha_p of a group's 16 rows (LutInt8Weight's layout): float32 bits, or float16 bits widened exactly.
inline __m512 alpha_row(const uint32_t* scales, int p, bool half) {
    if (half) return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(scales + p * kLut8Rows / 2)));
    return _mm512_castsi512_ps(_mm512_loadu_si512(scales + p * kLut8Rows));
}

// Lanes [b0, b0 + L) on row blocks [rb0, rb1): the indices of a block are built once and looked up
// in every lane's tables; y lives in `out` between scale groups.
template <int Q, int L, bool MASKED>
void rows_ql(const LutInt8Weight& w, const Int8Tables& t, int64_t b0, int64_t rb0, int64_t rb1, float* out) {
    const __m512i low_nibble = _mm512_set1_epi8(0x0F);
    const __m512i slot = _mm512_set1_epi32(0x30201000);  // byte k of each word: k << 4
    const __m512i ones = _mm512_set1_epi8(1);
    for (int64_t rb = rb0; rb < rb1; ++rb) {
        const int64_t r0 = rb * kLut8Rows;
        const __mmask16 keep = __mmask16((1u << std::min<int64_t>(kLut8Rows, w.rows - r0)) - 1u);
        for (int64_t g = 0; g < w.groups; ++g) {
            __m512i acc[L][Q + 1];  // [lane][mask, planes]
            #pragma GCC unroll 16
            for (int l = 0; l < L; ++l)
                #pragma GCC unroll 16
                for (int p = 0; p <= Q; ++p) acc[l][p] = _mm512_setzero_si512();
            const uint32_t* words = w.group_start(rb, g);
            const int64_t cb0 = g * w.group_blocks, cb1 = cb0 + w.group_block_count(g);
            constexpr int first = MASKED ? 0 : 1;  // without pruned weights the blocks hold no mask
            constexpr int block_words = (Q + 1 - first) * kLut8Rows;
            for (int64_t cb = cb0; cb < cb1; ++cb, words += block_words) {
                prefetch_ahead(words, Q + 1 - first);  // the block's mask (if any) and planes, a line each
                const __m512i m = MASKED ? _mm512_loadu_si512(words) : _mm512_setzero_si512();
                __m512i lo[Q + 1], hi[Q + 1];
                #pragma GCC unroll 16
                for (int p = first; p <= Q; ++p) {
                    const __m512i plane = _mm512_loadu_si512(words + (p - first) * kLut8Rows);
                    const __m512i v = !MASKED ? plane : p == 0 ? m : _mm512_and_si512(m, plane);
                    lo[p] = _mm512_ternarylogic_epi32(v, low_nibble, slot, kIndexOr);
                    hi[p] = _mm512_ternarylogic_epi32(_mm512_srli_epi16(v, 4), low_nibble, slot, kIndexOr);
                }
                #pragma GCC unroll 16
                for (int l = 0; l < L; ++l) {
                    const int8_t* tab = t.lane(b0 + l) + cb * kLut8TableBytes;
                    const __m512i even = _mm512_loadu_si512(tab), odd = _mm512_loadu_si512(tab + 64);
                    #pragma GCC unroll 16
                    for (int p = first; p <= Q; ++p) {
                        acc[l][p] = dpbusd(acc[l][p], ones, _mm512_permutexvar_epi8(lo[p], even));
                        acc[l][p] = dpbusd(acc[l][p], ones, _mm512_permutexvar_epi8(hi[p], odd));
                    }
                }
            }
            // the group's scales follow its blocks in the stream: fetched ahead as they are, read
            // once for all the lanes
            const uint32_t* sc = words;
            prefetch_ahead(sc, int(w.scale_words() / kLut8Rows));
            __m512 alpha[Q];
            #pragma GCC unroll 16
            for (int p = 0; p < Q; ++p) alpha[p] = alpha_row(sc, p, w.half_scales);
            const __m512 beta = w.offsets ? _mm512_castsi512_ps(_mm512_loadu_si512(sc + w.alpha_words())) : _mm512_setzero_ps();
            #pragma GCC unroll 16
            for (int l = 0; l < L; ++l) {
                float* y_out = out + (b0 + l) * w.rows + r0;
                __m512 y = g == 0 ? _mm512_setzero_ps() : _mm512_maskz_loadu_ps(keep, y_out);
                const __m512 s = _mm512_set1_ps(t.lane_scales(b0 + l)[g]);
                const __m512i acc_m = MASKED ? acc[l][0] : _mm512_set1_epi32(t.full_sum(b0 + l, g));
                #pragma GCC unroll 16
                for (int p = 0; p < Q; ++p) {
                    __m512 v = _mm512_cvtepi32_ps(_mm512_sub_epi32(_mm512_slli_epi32(acc[l][1 + p], 1), acc_m));
                    v = _mm512_mul_ps(v, s);
                    v = _mm512_mul_ps(v, alpha[p]);
                    y = _mm512_add_ps(y, v);
                }
                if (w.offsets) {
                    __m512 v = _mm512_cvtepi32_ps(acc_m);
                    v = _mm512_mul_ps(v, s);
                    v = _mm512_mul_ps(v, beta);
                    y = _mm512_add_ps(y, v);
                }
                _mm512_mask_storeu_ps(y_out, keep, y);
            }
        }
    }
}

template <int Q, bool MASKED>
void rows_qm(const LutInt8Weight& w, const Int8Tables& t, int64_t b0, int64_t b1, int64_t rb0, int64_t rb1, float* out) {
    constexpr int kWide = lut_int8_lanes(Q);
    static_assert(kWide <= 8, "the switch below runs at most 7 remaining lanes");
    int64_t b = b0;
    for (; b + kWide <= b1; b += kWide) rows_ql<Q, kWide, MASKED>(w, t, b, rb0, rb1, out);
    // the remaining lanes (fewer than kWide) in one pass, so that they share each block's indices too;
    // the min only keeps the unreachable cases from instantiating passes wider than kWide
    switch (b1 - b) {
        case 7: return rows_ql<Q, std::min(7, kWide), MASKED>(w, t, b, rb0, rb1, out);
        case 6: return rows_ql<Q, std::min(6, kWide), MASKED>(w, t, b, rb0, rb1, out);
        case 5: return rows_ql<Q, std::min(5, kWide), MASKED>(w, t, b, rb0, rb1, out);
        case 4: return rows_ql<Q, std::min(4, kWide), MASKED>(w, t, b, rb0, rb1, out);
        case 3: return rows_ql<Q, std::min(3, kWide), MASKED>(w, t, b, rb0, rb1, out);
        case 2: return rows_ql<Q, std::min(2, kWide), MASKED>(w, t, b, rb0, rb1, out);
        case 1: return rows_ql<Q, 1, MASKED>(w, t, b, rb0, rb1, out);
        default: return;
    }
}

template <int Q>
void rows_q(const LutInt8Weight& w, const Int8Tables& t, int64_t b0, int64_t b1, int64_t rb0, int64_t rb1, float* out) {
    if (w.all_kept) return rows_qm<Q, false>(w, t, b0, b1, rb0, rb1, out);
    rows_qm<Q, true>(w, t, b0, b1, rb0, rb1, out);
}

// The subset sums of the four column groups 4j + k, k = 0..3, of columns [16 j, 16 j + 16) (past the
// end 0): sums[k] lane n = low[n & 3] + high[n >> 2] (lut_int8.h), both gathered by VPERMT2PS from x
// and its pair sums: lane 2i of `pairs` holds x[2i] + x[2i + 1], its odd lanes 0.
struct QuadSums {
    __m512 sums[4];
    QuadSums(const float* x, int64_t cols, int64_t j) {
        const int64_t left = cols - 16 * j;  // 0 or less in a last block of at most 16 columns
        const __mmask16 in = left >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << std::max<int64_t>(left, 0)) - 1u);
        // no address past the row's end is formed: a run wholly past it loads nothing
        const __m512 v = left <= 0 ? _mm512_setzero_ps() : _mm512_maskz_loadu_ps(in, x + 16 * j);
        const __m512 pairs = _mm512_maskz_add_ps(0x5555, v, _mm512_permute_ps(v, 0xB1));
        // index 17: a zero of `pairs`; k: x[k]; 16 + k: pairs[k]
        const __m512i low = _mm512_setr_epi32(17, 0, 1, 16, 17, 0, 1, 16, 17, 0, 1, 16, 17, 0, 1, 16);
        const __m512i high = _mm512_setr_epi32(17, 17, 17, 17, 2, 2, 2, 2, 3, 3, 3, 3, 18, 18, 18, 18);
        for (int k = 0; k < 4; ++k) {
            const __m512i shift = _mm512_set1_epi32(4 * k);
            // the zero at 17 becomes 17 + 4k: pairs[4k + 1], also 0
            sums[k] = _mm512_add_ps(_mm512_permutex2var_ps(v, _mm512_add_epi32(low, shift), pairs),
                                    _mm512_permutex2var_ps(v, _mm512_add_epi32(high, shift), pairs));
        }
    }
};

}  // namespace

void int8_tables_lane_avx512(const LutInt8Weight& w, const float* x, int8_t* lane, float* scale, int32_t* full) {
    const __m512i lo = _mm512_set1_epi32(-127), hi = _mm512_set1_epi32(127);
    // a scale group is whole 32-column blocks: whole runs of 16 columns (four column groups)
    const int64_t runs = w.col_blocks * 2, group_runs = w.group_blocks * 2;
    for (int64_t g = 0; g < w.groups; ++g) {
        const int64_t j0 = g * group_runs, j1 = std::min(runs, j0 + group_runs);
        // max_ps returns its second operand when either is NaN: a NaN sum leaves the peak as it was,
        // as std::max does in the scalar reference
        __m512 peak = _mm512_setzero_ps();
        for (int64_t j = j0; j < j1; ++j) {
            const QuadSums t(x, w.cols, j);
            for (int k = 0; k < 4; ++k) peak = _mm512_max_ps(_mm512_abs_ps(t.sums[k]), peak);
        }
        const float top = _mm512_reduce_max_ps(peak);
        const __m512 inv = _mm512_set1_ps(int8_inverse(top));
        scale[g] = top / 127.0f;
        __m512i total = _mm512_setzero_si512();
        for (int64_t j = j0; j < j1; ++j) {
            const QuadSums t(x, w.cols, j);
            for (int k = 0; k < 4; ++k) {
                // cvtps rounds to nearest even under the default MXCSR, as lrint does; NaN becomes
                // INT_MIN, clamped to -127 like lrint's LONG_MIN
                __m512i q = _mm512_cvtps_epi32(_mm512_mul_ps(t.sums[k], inv));
                q = _mm512_min_epi32(_mm512_max_epi32(q, lo), hi);
                total = _mm512_add_epi32(total, q);
                const int64_t c = 4 * j + k;  // column group c of block c / 8: half c & 1, slot (c % 8) / 2
                int8_t* dst = lane + (c / 8) * kLut8TableBytes + (c & 1) * 64 + ((c % 8) / 2) * 16;
                _mm_storeu_si128(reinterpret_cast<__m128i*>(dst), _mm512_cvtepi32_epi8(q));
            }
        }
        full[g] = _mm512_mask_reduce_add_epi32(0x8000, total);  // lane 15: the all-ones entries
    }
}

void lut_int8_rows_avx512(const LutInt8Weight& w, const Int8Tables& t, int64_t b0, int64_t b1, int64_t rb0,
                          int64_t rb1, float* out) {
    switch (w.q) {
        case 1: return rows_q<1>(w, t, b0, b1, rb0, rb1, out);
        case 2: return rows_q<2>(w, t, b0, b1, rb0, rb1, out);
        case 3: return rows_q<3>(w, t, b0, b1, rb0, rb1, out);
        case 4: return rows_q<4>(w, t, b0, b1, rb0, rb1, out);
        case 5: return rows_q<5>(w, t, b0, b1, rb0, rb1, out);
        case 6: return rows_q<6>(w, t, b0, b1, rb0, rb1, out);
        case 7: return rows_q<7>(w, t, b0, b1, rb0, rb1, out);
        default: return rows_q<8>(w, t, b0, b1, rb0, rb1, out);
    }
}

}  // namespace sc
