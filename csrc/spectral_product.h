// The channel contraction of band-limited FFT convolution, one small complex matrix product per
// kept spectral bin:
//
//   out[g][m][i][j] = sum_k a[g][m][i][k] * b'[g][m][k][j]      (b' = conj(b) or b)
//
// for complex64 values stored as interleaved (re, im) float pairs. g runs over convolution groups
// and m over the kept bins. a and out may have any (non-negative) strides, so the input, output
// and gradient spectra stay in the layout the FFTs give them ((batch, channels, bins): the bins
// are their last axis); b is the filter-side operand, with j contiguous. One kernel serves the
// forward pass (a = input spectra, b = filter spectra, k = input channels, conj), the input
// gradient (a = output-gradient spectra, b = filter spectra, k = output channels) and the weight
// gradient (a = input spectra, b = output-gradient spectra, k = batch, conj).
//
// Every output value is accumulated in k order with four fused multiply-adds per step:
//   p = sum re(a) * b (both parts of b),  q = sum im(a) * b
// then out = (p.re + q.im, q.re - p.im) with conj, (p.re - q.im, p.im + q.re) without. The AVX2
// path does exactly these operations lane by lane, so it is bit-identical to the scalar reference.
#pragma once

#include <cmath>
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
// cols == 1), out (groups, bins, rows, cols), not overlapping a or b. out = a * b' (or
// out += a * b' when accumulate). Multi-threaded over groups and blocks of bins.
void spectral_product(const SpectralProductShape& shape, const SpectralView<const float>& a,
                      const SpectralView<const float>& b, bool conj_b, const SpectralView<float>& out, bool accumulate);

// The work of group g, bins [m0, m1): the scalar reference and its AVX2 twin.
void spectral_product_block_scalar(const SpectralProductShape& shape, const SpectralView<const float>& a,
                                   const SpectralView<const float>& b, bool conj_b, const SpectralView<float>& out,
                                   bool accumulate, int64_t g, int64_t m0, int64_t m1);
#ifdef SPARSECODEC_HAS_AVX2
void spectral_product_block_avx2(const SpectralProductShape& shape, const SpectralView<const float>& a,
                                 const SpectralView<const float>& b, bool conj_b, const SpectralView<float>& out,
                                 bool accumulate, int64_t g, int64_t m0, int64_t m1);
#endif

namespace spectral_detail {

// The reference arithmetic for out[g][m][i][j], j in [j0, j1). Internal linkage on purpose: each
// translation unit compiles its own copy with its own flags, so the linker can never hand the
// scalar path the AVX2 unit's copy.
static inline void product_reference(const SpectralProductShape& shape, const SpectralView<const float>& a,
                                     const SpectralView<const float>& b, bool conj_b, const SpectralView<float>& out,
                                     bool accumulate, int64_t g, int64_t m, int64_t i, int64_t j0, int64_t j1) {
    const int64_t a_step = 2 * a.stride[3], b_step = 2 * b.stride[2];
    for (int64_t j = j0; j < j1; ++j) {
        const float* av = a.at(g, m, i, 0);
        const float* bv = b.at(g, m, 0, j);
        float p_re = 0.0f, p_im = 0.0f, q_re = 0.0f, q_im = 0.0f;
        for (int64_t k = 0; k < shape.depth; ++k, av += a_step, bv += b_step) {
            p_re = std::fma(av[0], bv[0], p_re);
            p_im = std::fma(av[0], bv[1], p_im);
            q_re = std::fma(av[1], bv[0], q_re);
            q_im = std::fma(av[1], bv[1], q_im);
        }
        const float re = conj_b ? p_re + q_im : p_re - q_im;
        const float im = conj_b ? q_re - p_im : p_im + q_re;
        float* o = out.at(g, m, i, j);
        o[0] = accumulate ? o[0] + re : re;
        o[1] = accumulate ? o[1] + im : im;
    }
}

}  // namespace spectral_detail

}  // namespace sc
