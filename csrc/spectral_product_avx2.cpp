// AVX2 variant of spectral_product_block; compiled with -mavx2 -mfma -ffp-contract=off and called only
// after a CPU check. Four complex columns j per register: per depth step a register of b becomes
// (re b, -+im b) and (+-im b, re b), the real and the imaginary part of one a value are broadcast,
// and two fused multiply-adds per register follow the reference lane by lane, so the result is
// bit-identical to the scalar path. A tile keeps kRows x kVectors registers of outputs to reuse each
// load; the last, partial vector of a row uses masked loads, and outputs that are not contiguous in
// j are stored lane by lane.
#include <immintrin.h>

#include <algorithm>
#include <cstdint>

#include "spectral_product.h"

namespace sc {

namespace {

constexpr int kRows = 4;
constexpr int kVectors = 2;

// Lanes of the first `complex_count` complex values (two floats each) of a register.
inline __m256i lane_mask(int64_t complex_count) {
    const __m256i index = _mm256_setr_epi32(0, 0, 1, 1, 2, 2, 3, 3);
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(int(complex_count)), index);
}

inline void store_outputs(float* o, int64_t j_stride, __m256 v, int64_t count) {
    if (j_stride == 1 && count == 4) {
        _mm256_storeu_ps(o, v);
        return;
    }
    alignas(32) float lanes[8];
    _mm256_store_ps(lanes, v);
    for (int64_t c = 0; c < count; ++c, o += 2 * j_stride) {
        o[0] = lanes[2 * c];
        o[1] = lanes[2 * c + 1];
    }
}

// Rows [i, i + Rows) x columns [j, j + 4 * Vectors) of bin m, the last vector holding `last` columns.
// The loops over the tile are unrolled explicitly: without it GCC keeps the accumulator arrays in
// memory and stores them on every depth step.
template <int Rows, int Vectors>
void product_tile(const SpectralProductShape& shape, const SpectralView<const float>& a,
                  const SpectralView<const float>& b, bool conj_b, const SpectralView<float>& out, int64_t g,
                  int64_t m, int64_t i, int64_t j, int64_t last) {
    __m256 acc[Rows][Vectors];
#pragma GCC unroll 4
    for (int r = 0; r < Rows; ++r)
#pragma GCC unroll 4
        for (int v = 0; v < Vectors; ++v) acc[r][v] = _mm256_setzero_ps();
    const __m256i tail = lane_mask(last);
    const float* a_rows[Rows];
#pragma GCC unroll 4
    for (int r = 0; r < Rows; ++r) a_rows[r] = a.at(g, m, i + r, 0);
    const float* b_row = b.at(g, m, 0, j);
    const int64_t a_step = 2 * a.stride[3], b_step = 2 * b.stride[2], depth = shape.depth;
    const bool partial = last < 4;
    // Sign flips: conj: (re, -im) meets re a, (im, re) meets im a; plain: (re, im) and (-im, re).
    const __m256 odd_sign = _mm256_castsi256_ps(_mm256_set1_epi64x(int64_t(uint64_t(1) << 63)));
    const __m256 even_sign = _mm256_castsi256_ps(_mm256_set1_epi64x(int64_t(uint64_t(1) << 31)));
    const __m256 with_re = conj_b ? odd_sign : _mm256_setzero_ps();
    const __m256 with_im = conj_b ? _mm256_setzero_ps() : even_sign;
    for (int64_t k = 0; k < depth; ++k, b_row += b_step) {
        __m256 b_re_part[Vectors], b_im_part[Vectors];
#pragma GCC unroll 4
        for (int v = 0; v < Vectors; ++v) {
            const __m256 bv = (v == Vectors - 1 && partial) ? _mm256_maskload_ps(b_row + 8 * v, tail)
                                                            : _mm256_loadu_ps(b_row + 8 * v);
            b_re_part[v] = _mm256_xor_ps(bv, with_re);
            b_im_part[v] = _mm256_xor_ps(_mm256_permute_ps(bv, 0xB1), with_im);
        }
#pragma GCC unroll 4
        for (int r = 0; r < Rows; ++r) {
            const float* av = a_rows[r] + k * a_step;
            const __m256 a_re = _mm256_broadcast_ss(av), a_im = _mm256_broadcast_ss(av + 1);
#pragma GCC unroll 4
            for (int v = 0; v < Vectors; ++v)
                acc[r][v] = _mm256_fmadd_ps(a_im, b_im_part[v], _mm256_fmadd_ps(a_re, b_re_part[v], acc[r][v]));
        }
    }
    const int64_t j_stride = out.stride[3];
#pragma GCC unroll 4
    for (int r = 0; r < Rows; ++r)
#pragma GCC unroll 4
        for (int v = 0; v < Vectors; ++v)
            store_outputs(out.at(g, m, i + r, j + 4 * v), j_stride, acc[r][v], v == Vectors - 1 ? last : 4);
}

template <int Rows>
void product_rows(const SpectralProductShape& shape, const SpectralView<const float>& a,
                  const SpectralView<const float>& b, bool conj_b, const SpectralView<float>& out, int64_t g,
                  int64_t m, int64_t i) {
    constexpr int64_t kWidth = 4 * kVectors;
    int64_t j = 0;
    for (; j + kWidth <= shape.cols; j += kWidth)
        product_tile<Rows, kVectors>(shape, a, b, conj_b, out, g, m, i, j, 4);
    for (; j < shape.cols; j += 4)
        product_tile<Rows, 1>(shape, a, b, conj_b, out, g, m, i, j, std::min<int64_t>(4, shape.cols - j));
}

}  // namespace

void spectral_product_block_avx2(const SpectralProductShape& shape, const SpectralView<const float>& a,
                                 const SpectralView<const float>& b, bool conj_b, const SpectralView<float>& out,
                                 int64_t g, int64_t m0, int64_t m1) {
    for (int64_t m = m0; m < m1; ++m) {
        int64_t i = 0;
        for (; i + kRows <= shape.rows; i += kRows) product_rows<kRows>(shape, a, b, conj_b, out, g, m, i);
        for (; i < shape.rows; ++i) product_rows<1>(shape, a, b, conj_b, out, g, m, i);
    }
}

}  // namespace sc
