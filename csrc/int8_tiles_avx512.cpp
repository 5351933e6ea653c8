// AVX-512 (F, BW, VBMI, VNNI, GFNI) twins of the int8-tile decode and product (see int8_tiles.h).
//
// Decode, per block of 16 rows x 32 columns: byte unpacks gather, per row and 8 columns, the qword of
// the 4 planes' bytes and the pruned byte; GF2P8AFFINEQB transposes each qword's 8 x 8 bits, giving a
// byte per weight (its bit pattern, bit 7 set where pruned); VPSHUFB looks it up in the row's table
// (one row per 128-bit lane, 0 where bit 7 is set), and a 4 x 4 dword transpose per lane puts the
// bytes in the tile's order. About 7 vector instructions per 64 weights.
// Product: per step of 4 columns, the tile's four zmm of weights (64 rows) against the 4 bytes of up
// to 4 batch rows broadcast, 16 VPDPBUSD accumulators that start at -128 V; per scale group they are
// scaled into y, which waits in a local buffer until the tile's last group.
#include <immintrin.h>

#include <algorithm>

#include "int8_tiles.h"
#include "int8_avx512.h"

namespace sc {

namespace {

// The tile's 64 rows (four zmm per step) for batch lanes [b0, b0 + NB), NB <= 4: 16 accumulators,
// and each broadcast of a lane's four x bytes feeds four VPDPBUSD. On Zen 4 a broadcast load takes a
// vector pipe as VPDPBUSD does, so sharing one over 4 rows-vectors rather than 2 leaves more of the
// pipes' cycles to the products.
template <int NB>
void product_nb(const LutInt8Weight& w, const Int8TileValues& v, int64_t r0, const int8_t* tile, const uint8_t* xq,
                const float* x_scale, int64_t b0, float* out, int64_t kpad) {
    constexpr int kVectors = int(kTileRows / 16);
    const uint8_t* xb[NB];
#pragma GCC unroll 4
    for (int b = 0; b < NB; ++b) xb[b] = xq + (b0 + b) * kpad;
    // y of the tile's rows between groups: a full aligned store and reload, which the next group's
    // load takes straight from the store buffer (a masked store into `out` would not forward)
    alignas(64) float y_tile[NB][kVectors][16];
    const int64_t group_steps = w.group_blocks * (kLut8Cols / 4);
    for (int64_t g = 0; g < w.groups; ++g) {
        // the accumulators start at -128 V, so that they end at acc - 128 V (exact in int32)
        __m512i acc[NB][kVectors];
#pragma GCC unroll 4
        for (int j = 0; j < kVectors; ++j) {
            const __m512i start = _mm512_sub_epi32(
                _mm512_setzero_si512(), _mm512_slli_epi32(_mm512_loadu_si512(v.group_sum(g) + r0 + 16 * j), 7));
#pragma GCC unroll 4
            for (int b = 0; b < NB; ++b) acc[b][j] = start;
        }
        const int64_t s1 = std::min(kpad / 4, (g + 1) * group_steps);
        for (int64_t s = g * group_steps; s < s1; ++s) {
            const int8_t* step = tile + s * (kTileRows * 4);
            __m512i wv[kVectors];
#pragma GCC unroll 4
            for (int j = 0; j < kVectors; ++j) wv[j] = _mm512_load_si512(step + 64 * j);
#pragma GCC unroll 4
            for (int b = 0; b < NB; ++b) {
                int32_t four;
                __builtin_memcpy(&four, xb[b] + 4 * s, 4);
                const __m512i xv = _mm512_set1_epi32(four);
#pragma GCC unroll 4
                for (int j = 0; j < kVectors; ++j) acc[b][j] = dpbusd(acc[b][j], xv, wv[j]);
            }
        }
        // Every index below is a compile-time constant once unrolled, so the accumulators stay in
        // registers (a data-dependent exit would make the compiler keep them in memory).
        __m512 sx[NB];
#pragma GCC unroll 4
        for (int b = 0; b < NB; ++b) sx[b] = _mm512_set1_ps(x_scale[(b0 + b) * w.groups + g]);
#pragma GCC unroll 4
        for (int j = 0; j < kVectors; ++j) {
            const __m512 sw = _mm512_loadu_ps(v.group_scale(g) + r0 + 16 * j);
#pragma GCC unroll 4
            for (int b = 0; b < NB; ++b) {
                __m512 t = _mm512_cvtepi32_ps(acc[b][j]);
                t = _mm512_mul_ps(t, sx[b]);
                t = _mm512_mul_ps(t, sw);
                _mm512_store_ps(y_tile[b][j], g == 0 ? t : _mm512_add_ps(_mm512_load_ps(y_tile[b][j]), t));
            }
        }
    }
    // rows past the weight's end (zero in the tile) are not stored
#pragma GCC unroll 4
    for (int j = 0; j < kVectors; ++j) {
        const int64_t r = r0 + 16 * j;
        const int64_t n = std::max<int64_t>(0, std::min<int64_t>(16, w.rows - r));
        const __mmask16 keep = __mmask16((1u << n) - 1u);
#pragma GCC unroll 4
        for (int b = 0; b < NB; ++b) _mm512_mask_storeu_ps(out + (b0 + b) * w.rows + r, keep, _mm512_load_ps(y_tile[b][j]));
    }
}

}  // namespace

void quantize_int8_row_avx512(const float* x, int64_t cols, int64_t group_cols, uint8_t* xq, float* scale) {
    for (int64_t c0 = 0, g = 0; c0 < cols; c0 += group_cols, ++g) {
        const int64_t c1 = std::min(cols, c0 + group_cols);
        // max_ps returns its second operand when either is NaN: a NaN of x leaves the peak as it was,
        // as std::max does in the scalar reference
        __m512 peak = _mm512_setzero_ps();
        for (int64_t c = c0; c < c1; c += 16) {
            const __mmask16 m = c1 - c >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << (c1 - c)) - 1u);
            peak = _mm512_max_ps(_mm512_abs_ps(_mm512_maskz_loadu_ps(m, x + c)), peak);
        }
        const float top = _mm512_reduce_max_ps(peak);
        const float inv = int8_inverse(top);
        scale[g] = top / 127.0f;
        const __m512 vinv = _mm512_set1_ps(inv);
        const __m512i lo = _mm512_set1_epi32(-127), hi = _mm512_set1_epi32(127), bias = _mm512_set1_epi32(128);
        for (int64_t c = c0; c < c1; c += 16) {
            const __mmask16 m = c1 - c >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << (c1 - c)) - 1u);
            // cvtps rounds to nearest even under the default MXCSR, as lrint does; NaN becomes INT_MIN,
            // clamped to -127 like lrint's LONG_MIN
            __m512i q = _mm512_cvtps_epi32(_mm512_mul_ps(_mm512_maskz_loadu_ps(m, x + c), vinv));
            q = _mm512_add_epi32(_mm512_min_epi32(_mm512_max_epi32(q, lo), hi), bias);
            _mm512_mask_cvtepi32_storeu_epi8(xq + c, m, q);
        }
    }
}

void decode_int8_tile_avx512(const LutInt8Weight& w, const Int8TileValues& v, int64_t r0, int8_t* tile) {
    const int64_t rb0 = r0 / kLut8Rows;
    const __m512i zero = _mm512_setzero_si512();
    // byte j of each qword is 1 << j: GF2P8AFFINEQB against it transposes the qword's 8 x 8 bits
    const __m512i one_hot = _mm512_set1_epi64(int64_t(0x8040201008040201ull));
    constexpr int kStep = int(kTileRows * 4);  // bytes per step of 4 columns
    for (int j = 0; j < 4; ++j) {
        const int64_t rb = rb0 + j;
        int8_t* dst = tile + j * 64;
        if (rb >= w.row_blocks) {
            for (int64_t s = 0; s < w.col_blocks * 8; ++s) _mm512_storeu_si512(dst + s * kStep, zero);
            continue;
        }
        for (int64_t g = 0; g < w.groups; ++g) {
            const int8_t* tables = v.block_tables(rb, g);
            __m512i table[4];
            for (int m = 0; m < 4; ++m) table[m] = _mm512_loadu_si512(tables + 64 * m);
            const uint32_t* words = w.group_start(rb, g);
            const int64_t cb0 = g * w.group_blocks, cb1 = cb0 + w.group_block_count(g);
            for (int64_t cb = cb0; cb < cb1; ++cb, words += w.block_words()) {
                // Byte i of a block's zmm (mask or plane) is byte i % 4 of row i / 4's word: a
                // 128-bit lane L holds rows 4L .. 4L + 3. Unpacks gather, per row and byte k (8
                // columns), the qword (not kept, 0, 0, 0, plane 3, plane 2, plane 1, plane 0), whose
                // transpose is 8 bytes, one per column: the bit pattern, with bit 7 set where the
                // weight is pruned (VPSHUFB then yields 0).
                prefetch_ahead(words, int(w.block_words() / kLut8Rows));
                // without a mask (every weight kept) only the columns past the weight's end count as
                // pruned: their x bytes are 128 and their values must be 0 (rows past the end need
                // no flag: their tables in Int8TileValues are all 0)
                const __m512i pruned = !w.all_kept ? _mm512_ternarylogic_epi32(zero, zero, _mm512_loadu_si512(words), 0x55)
                                       : cb + 1 < w.col_blocks || w.cols % kLut8Cols == 0
                                           ? zero
                                           : _mm512_set1_epi32(int32_t(~((uint32_t(1) << (w.cols % kLut8Cols)) - 1u)));
                __m512i plane[kTileMaxBits];
                for (int p = 0; p < kTileMaxBits; ++p)
                    plane[p] = p < w.q ? _mm512_loadu_si512(LutInt8Weight::plane_words(words, w.mask_planes(), p)) : zero;
                const __m512i p32_lo = _mm512_unpacklo_epi8(plane[3], plane[2]), p32_hi = _mm512_unpackhi_epi8(plane[3], plane[2]);
                const __m512i p10_lo = _mm512_unpacklo_epi8(plane[1], plane[0]), p10_hi = _mm512_unpackhi_epi8(plane[1], plane[0]);
                const __m512i n_lo = _mm512_unpacklo_epi8(pruned, zero), n_hi = _mm512_unpackhi_epi8(pruned, zero);
                // dword quarter i of the lane's 16 bytes (bytes 4i .. 4i + 3: row 4L + i)
                const __m512i bits[4] = {_mm512_unpacklo_epi16(p32_lo, p10_lo), _mm512_unpackhi_epi16(p32_lo, p10_lo),
                                         _mm512_unpacklo_epi16(p32_hi, p10_hi), _mm512_unpackhi_epi16(p32_hi, p10_hi)};
                const __m512i flag[4] = {_mm512_unpacklo_epi16(n_lo, zero), _mm512_unpackhi_epi16(n_lo, zero),
                                         _mm512_unpacklo_epi16(n_hi, zero), _mm512_unpackhi_epi16(n_hi, zero)};
                for (int h = 0; h < 2; ++h) {
                    // value[i]: lane L holds row 4L + i, columns 16h .. 16h + 15 of the block
                    __m512i value[4];
                    for (int i = 0; i < 4; ++i) {
                        const __m512i qwords = h == 0 ? _mm512_unpacklo_epi32(flag[i], bits[i]) : _mm512_unpackhi_epi32(flag[i], bits[i]);
                        const __m512i code = _mm512_gf2p8affine_epi64_epi8(one_hot, qwords, 0);
                        value[i] = _mm512_shuffle_epi8(table[i], code);
                    }
                    // 4 x 4 dword transpose in each lane: out[d] lane L dword i = row 4L + i, columns
                    // 16h + 4d .. 16h + 4d + 3, the tile's order
                    const __m512i t0 = _mm512_unpacklo_epi32(value[0], value[1]), t1 = _mm512_unpackhi_epi32(value[0], value[1]);
                    const __m512i t2 = _mm512_unpacklo_epi32(value[2], value[3]), t3 = _mm512_unpackhi_epi32(value[2], value[3]);
                    const __m512i out[4] = {_mm512_unpacklo_epi64(t0, t2), _mm512_unpackhi_epi64(t0, t2),
                                            _mm512_unpacklo_epi64(t1, t3), _mm512_unpackhi_epi64(t1, t3)};
                    for (int d = 0; d < 4; ++d) _mm512_store_si512(dst + (cb * 8 + 4 * h + d) * kStep, out[d]);
                }
            }
            prefetch_ahead(words, int(w.scale_words() / kLut8Rows));  // the group's scales (not read here) sit in the blocks' stream
        }
    }
}

void int8_tile_product_avx512(const LutInt8Weight& w, const Int8TileValues& v, int64_t r0, const int8_t* tile,
                              const uint8_t* xq, const float* x_scale, int64_t batch, float* out) {
    const int64_t kpad = w.col_blocks * kLut8Cols;
    int64_t b = 0;
    for (; b + 4 <= batch; b += 4) product_nb<4>(w, v, r0, tile, xq, x_scale, b, out, kpad);
    switch (batch - b) {
        case 3: product_nb<3>(w, v, r0, tile, xq, x_scale, b, out, kpad); break;
        case 2: product_nb<2>(w, v, r0, tile, xq, x_scale, b, out, kpad); break;
        case 1: product_nb<1>(w, v, r0, tile, xq, x_scale, b, out, kpad); break;
        default: break;
    }
}

}  // namespace sc
