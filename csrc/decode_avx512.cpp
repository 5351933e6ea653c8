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
    if (net.byte_matrices.empty() || t0 % 64 != 0) return false;
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
        const uint64_t* m = net.byte_matrices.data() + size_t(k) * size_t(net.depth);
        __m512i y = _mm512_gf2p8affine_epi64_epi8(lagged[0], _mm512_set1_epi64(int64_t(m[0])), 0);
        for (int lag = 1; lag < net.depth; ++lag)
            y = _mm512_xor_si512(y, _mm512_gf2p8affine_epi64_epi8(lagged[lag], _mm512_set1_epi64(int64_t(m[lag])), 0));
        const int n = std::min(8, net.n_out - 8 * k);
        for (int b = 0; b < n; ++b) out[8 * k + b] = _mm512_test_epi8_mask(y, _mm512_set1_epi8(char(1 << b)));
    }
    return true;
}

}  // namespace sc
