// The channel contraction of band-limited FFT convolution, one small complex matrix product per
// kept spectral bin:
//
//   out[g][m][i][j] = sum_k a[g][m][i][k] * b'[g][m][k][j]      (b' = conj(b) or b)
//
// for complex64 values stored as interleaved (re, im) float pairs. g runs over convolution groups
// and m over the kept bins. a and out may have any (non-negative) strides, so outputs go straight
// into the layout the inverse FFT reads; b has j contiguous. One kernel serves the forward pass
// (a = input spectra, b = filter spectra, k = input channels, conj), the input gradient, computed
// transposed (a = filter spectra, b = output-gradient spectra, k = output channels), and the weight
// gradient (a = input spectra, b = output-gradient spectra, k = batch, conj).
//
// Every output value is accumulated in k order with two fused multiply-adds per part and step:
//   conj:  re = fma(im a, im b, fma(re a, re b, re)),  im = fma(im a, re b, fma(re a, -im b, im))
//   plain: re = fma(im a, -im b, fma(re a, re b, re)), im = fma(im a, re b, fma(re a, im b, im))
// The AVX2 path does exactly these operations lane by lane (broadcasting a's parts against b and
// its swapped, sign-flipped copy), so it is bit-identical to the scalar reference.
#pragma once

#include <cstdint>

namespace sc {

// A strided 4-D array of complex64; strides count complex values.
template <class T>
struct SpectralView {
    T* data;
    int64_t stride[4];
    T* at(int64_t d0, int64_t d1, int64_t d2, int64_t d3) const {
        return data + 2 * (d0 * stride[0] + d1 * stride[1] + d2 * stride[2] + d3 * stride[3]);
    }
};

struct SpectralProductShape {
    int64_t groups, bins, rows, cols, depth;  // g, m, i, j, k
};

// a (groups, bins, rows, depth), b (groups, bins, depth, cols) with b.stride[3] == 1 (unless
// cols == 1), out (groups, bins, rows, cols), not overlapping a or b: out = a * b'. Multi-threaded
// over groups and blocks of bins.
void spectral_product(const SpectralProductShape& shape, const SpectralView<const float>& a,
                      const SpectralView<const float>& b, bool conj_b, const SpectralView<float>& out);

// The work of group g, bins [m0, m1): the scalar reference and its AVX2 twin.
void spectral_product_block_scalar(const SpectralProductShape& shape, const SpectralView<const float>& a,
                                   const SpectralView<const float>& b, bool conj_b, const SpectralView<float>& out,
                                   int64_t g, int64_t m0, int64_t m1);
#ifdef SPARSECODEC_HAS_AVX2
void spectral_product_block_avx2(const SpectralProductShape& shape, const SpectralView<const float>& a,
                                 const SpectralView<const float>& b, bool conj_b, const SpectralView<float>& out,
                                 int64_t g, int64_t m0, int64_t m1);
#endif

}  // namespace sc
