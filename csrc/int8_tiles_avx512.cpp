// AVX-512 (F, BW, VBMI, VNNI, BITALG) twins of the int8-tile decode and product (see int8_tiles.h).
//
// Decode: a zmm of the tile holds 16 rows x 4 columns. VPSHUFBITQMB picks, per 64-bit lane (two rows'
// 32-bit words of a plane), the 4 bits of each row at those columns, giving one mask bit per tile
// byte; masked byte adds build each byte's bit pattern, and two VPERMI2B look the pattern up in the
// 16 rows' tables of the scale group (rows 0-7 and 8-15), zeroed where the weight is pruned.
// Product: per step of 4 columns, the tile's four zmm of weights (64 rows) against the 4 bytes of up
// to 4 batch rows broadcast, 16 VPDPBUSD accumulators that start at -128 V; per scale group they are
// scaled into y, which waits in a local buffer until the tile's last group.
#include <immintrin.h>

#include <algorithm>

#include "int8_tiles.h"

namespace sc {

namespace {

// Bit selectors of VPSHUFBITQMB for columns 4t .. 4t + 3 of the two rows in each 64-bit lane.
inline __m512i column_selector(int t) {
    const uint64_t lo = uint64_t(4 * t) | uint64_t(4 * t + 1) << 8 | uint64_t(4 * t + 2) << 16 | uint64_t(4 * t + 3) << 24;
    const uint64_t lane = lo | (lo + 0x20202020ull) << 32;
    return _mm512_set1_epi64(int64_t(lane));
}

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
                for (int j = 0; j < kVectors; ++j) acc[b][j] = _mm512_dpbusd_epi32(acc[b][j], xv, wv[j]);
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
    // byte i of a tile zmm is row i / 4 of its block: that row's table starts at ((i / 4) % 8) * 16
    alignas(64) uint8_t row_offset[64];
    for (int i = 0; i < 64; ++i) row_offset[i] = uint8_t(((i / 4) % 8) * 16);
    const __m512i offsets = _mm512_load_si512(row_offset);
    const __mmask64 upper_rows = 0xFFFFFFFF00000000ull;
    __m512i selector[8];
    for (int t = 0; t < 8; ++t) selector[t] = column_selector(t);
    for (int j = 0; j < 4; ++j) {
        const int64_t rb = rb0 + j;
        int8_t* dst = tile + j * 64;
        if (rb >= w.row_blocks) {
            for (int64_t s = 0; s < w.col_blocks * 8; ++s) _mm512_storeu_si512(dst + s * (kTileRows * 4), _mm512_setzero_si512());
            continue;
        }
        for (int64_t g = 0; g < w.groups; ++g) {
            const int8_t* tables = v.block_tables(rb, g);
            const __m512i t0 = _mm512_loadu_si512(tables), t1 = _mm512_loadu_si512(tables + 64);
            const __m512i t2 = _mm512_loadu_si512(tables + 128), t3 = _mm512_loadu_si512(tables + 192);
            const int64_t cb1 = std::min(w.col_blocks, (g + 1) * w.group_blocks);
            for (int64_t cb = g * w.group_blocks; cb < cb1; ++cb) {
                const uint32_t* words = w.block(rb, cb);
                const __m512i m = _mm512_loadu_si512(words);
                __m512i planes[kTileMaxBits];
                for (int p = 0; p < w.q; ++p) planes[p] = _mm512_loadu_si512(words + (1 + p) * kLut8Rows);
                for (int t = 0; t < 8; ++t) {
                    const __mmask64 kept = _mm512_bitshuffle_epi64_mask(m, selector[t]);
                    __m512i code = offsets;
                    for (int p = 0; p < w.q; ++p)
                        code = _mm512_mask_add_epi8(code, _mm512_bitshuffle_epi64_mask(planes[p], selector[t]), code,
                                                    _mm512_set1_epi8(char(1 << p)));
                    const __m512i low = _mm512_permutex2var_epi8(t0, code, t1);
                    const __m512i high = _mm512_permutex2var_epi8(t2, code, t3);
                    const __m512i value = _mm512_maskz_mov_epi8(kept, _mm512_mask_blend_epi8(upper_rows, low, high));
                    _mm512_storeu_si512(dst + (cb * 8 + t) * (kTileRows * 4), value);
                }
            }
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
