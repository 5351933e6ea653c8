// AVX-512 decoding of whole bands of 64 slices for networks of 8 stored bits per slice; compiled
// with -mavx512* -mgfni and called only after a CPU check.
//
// With n_in = 8 a slice's window is whole bytes of the code: its own byte and those of the depth - 1
// slices before it. One GF2P8AFFINEQB applies an 8 x 8 block of the network to the same byte of all
// 64 slices of a band, and VPTESTMB turns output bit j of the 64 slices into word j of decode_band's
// bit-sliced output: no window transpose and no nibble tables.
#include <immintrin.h>

#include <algorithm>

#include "plane_codec.h"

namespace sc {

bool band_direct_avx512(const XorNetwork& net, const PlaneGeometry& geo, const uint64_t* code, int64_t t0,
                        uint64_t* out) {
    if (net.n_in != 8 || t0 % 64 != 0) return false;  // window byte `lag` is code byte t - lag
    const uint8_t* bytes = reinterpret_cast<const uint8_t*>(code);
    // lagged[lag] byte s = code byte t0 + s - lag: the band's slices' words `lag` slices back. A band
    // never straddles a chain (chains are whole bands); words before its start read as zero.
    const int64_t chain_start = net.depth > 1 ? t0 / geo.chain * geo.chain : t0;
    const __m512i own = _mm512_loadu_si512(bytes + t0);
    __m512i lagged[kMaxDepth];
    lagged[0] = own;
    for (int lag = 1; lag < net.depth; ++lag) {
        if (t0 - lag >= chain_start) {
            lagged[lag] = _mm512_loadu_si512(bytes + t0 - lag);
        } else {  // shift the band's own bytes up by `lag` lanes, zeros below
            alignas(64) static constexpr uint8_t kLanes[64] = {
                0,  1,  2,  3,  4,  5,  6,  7,  8,  9,  10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21,
                22, 23, 24, 25, 26, 27, 28, 29, 30, 31, 32, 33, 34, 35, 36, 37, 38, 39, 40, 41, 42, 43,
                44, 45, 46, 47, 48, 49, 50, 51, 52, 53, 54, 55, 56, 57, 58, 59, 60, 61, 62, 63};
            const __m512i idx = _mm512_sub_epi8(_mm512_load_si512(kLanes), _mm512_set1_epi8(char(lag)));
            lagged[lag] = _mm512_maskz_permutexvar_epi8(~uint64_t(0) << lag, idx, own);
        }
    }
    const int out_bytes = (net.n_out + 7) / 8;
    for (int k = 0; k < out_bytes; ++k) {
        const uint64_t* m = net.byte_matrices.data() + size_t(k) * size_t(net.window_bytes);
        __m512i y = _mm512_gf2p8affine_epi64_epi8(lagged[0], _mm512_set1_epi64(int64_t(m[0])), 0);
        for (int lag = 1; lag < net.depth; ++lag)
            y = _mm512_xor_si512(y, _mm512_gf2p8affine_epi64_epi8(lagged[lag], _mm512_set1_epi64(int64_t(m[lag])), 0));
        const int n = std::min(8, net.n_out - 8 * k);
        for (int b = 0; b < n; ++b) out[8 * k + b] = _mm512_test_epi8_mask(y, _mm512_set1_epi8(char(1 << b)));
    }
    return true;
}

namespace {

// Byte 8j + l <- byte 8l + j: a register's 8 words as 8 words of one byte each (and back: it is its
// own inverse).
alignas(64) constexpr uint8_t kByteTranspose[64] = {
    0, 8,  16, 24, 32, 40, 48, 56, 1, 9,  17, 25, 33, 41, 49, 57, 2, 10, 18, 26, 34, 42, 50, 58,
    3, 11, 19, 27, 35, 43, 51, 59, 4, 12, 20, 28, 36, 44, 52, 60, 5, 13, 21, 29, 37, 45, 53, 61,
    6, 14, 22, 30, 38, 46, 54, 62, 7, 15, 23, 31, 39, 47, 55, 63};

// r[i] word j <-> r[j] word i.
inline void transpose_words(__m512i r[8]) {
    __m512i t[8], u[8];
    for (int i = 0; i < 4; ++i) {
        t[2 * i] = _mm512_unpacklo_epi64(r[2 * i], r[2 * i + 1]);
        t[2 * i + 1] = _mm512_unpackhi_epi64(r[2 * i], r[2 * i + 1]);
    }
    for (int h = 0; h < 2; ++h)
        for (int i = 0; i < 2; ++i) {
            u[4 * h + i] = _mm512_shuffle_i64x2(t[4 * h + i], t[4 * h + 2 + i], 0x88);
            u[4 * h + 2 + i] = _mm512_shuffle_i64x2(t[4 * h + i], t[4 * h + 2 + i], 0xDD);
        }
    for (int i = 0; i < 4; ++i) {
        r[i] = _mm512_shuffle_i64x2(u[i], u[4 + i], 0x88);
        r[4 + i] = _mm512_shuffle_i64x2(u[i], u[4 + i], 0xDD);
    }
}

}  // namespace

void decode_slices_avx512(const XorNetwork& net, const PlaneGeometry& geo, const uint64_t* code, int64_t s0,
                          int64_t s1, uint64_t* out) {
    // Square networks of 64 bits (encode's choice with nothing pruned): slice t is code word t and
    // decodes to output word t - s0. 64 slices at a time: their bytes regrouped so that register j
    // holds byte j of all 64 words, 64 GF2P8AFFINEQB for the 8 x 8 blocks of the network, and back.
    if (net.n_in != 64 || net.n_out != 64 || net.depth != 1) return decode_slices_avx2(net, geo, code, s0, s1, out);
    const __m512i regroup = _mm512_load_si512(kByteTranspose);
    const uint64_t* m = net.byte_matrices.data();
    int64_t t = s0;
    for (; t + 64 <= s1; t += 64) {
        __m512i w[8], y[8];
        for (int i = 0; i < 8; ++i) w[i] = _mm512_permutexvar_epi8(regroup, _mm512_loadu_si512(code + t + 8 * i));
        transpose_words(w);  // w[j] byte 8i + l: byte j of slice t + 8i + l
        for (int k = 0; k < 8; ++k) {
            y[k] = _mm512_gf2p8affine_epi64_epi8(w[0], _mm512_set1_epi64(int64_t(m[8 * k])), 0);
            for (int j = 1; j < 8; ++j)
                y[k] = _mm512_xor_si512(y[k], _mm512_gf2p8affine_epi64_epi8(w[j], _mm512_set1_epi64(int64_t(m[8 * k + j])), 0));
        }
        transpose_words(y);  // y[i] word k: output byte k of slices t + 8i .. t + 8i + 7
        for (int i = 0; i < 8; ++i) _mm512_storeu_si512(out + (t - s0) + 8 * i, _mm512_permutexvar_epi8(regroup, y[i]));
    }
    if (t < s1) decode_slices_avx2(net, geo, code, t, s1, out + (t - s0));
}

}  // namespace sc
