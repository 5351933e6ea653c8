#include "spectral_product.h"

#include <algorithm>
#include <cmath>

#include "cpu_dispatch.h"
#include "kernel_table.h"
#include "parallel.h"

namespace sc {

namespace {

// The reference arithmetic (see spectral_product.h) for the outputs of row i of bin m.
void product_reference(const SpectralProductShape& shape, const SpectralView<const float>& a,
                       const SpectralView<const float>& b, bool conj_b, const SpectralView<float>& out, int64_t g,
                       int64_t m, int64_t i) {
    const int64_t a_step = 2 * a.stride[3], b_step = 2 * b.stride[2];
    const float sign = conj_b ? -1.0f : 1.0f;  // applied to im b where it meets re a (exact)
    for (int64_t j = 0; j < shape.cols; ++j) {
        const float* av = a.at(g, m, i, 0);
        const float* bv = b.at(g, m, 0, j);
        float re = 0.0f, im = 0.0f;
        for (int64_t k = 0; k < shape.depth; ++k, av += a_step, bv += b_step) {
            re = std::fma(av[1], -sign * bv[1], std::fma(av[0], bv[0], re));
            im = std::fma(av[1], bv[0], std::fma(av[0], sign * bv[1], im));
        }
        float* o = out.at(g, m, i, j);
        o[0] = re;
        o[1] = im;
    }
}

// Bins per work unit: enough work per unit to amortise the scheduling, and many units to share.
constexpr int64_t kBinsPerBlock = 8;

}  // namespace

void spectral_product_block_scalar(const SpectralProductShape& shape, const SpectralView<const float>& a,
                                   const SpectralView<const float>& b, bool conj_b, const SpectralView<float>& out,
                                   int64_t g, int64_t m0, int64_t m1) {
    for (int64_t m = m0; m < m1; ++m)
        for (int64_t i = 0; i < shape.rows; ++i)
            product_reference(shape, a, b, conj_b, out, g, m, i);
}

void spectral_product(const SpectralProductShape& shape, const SpectralView<const float>& a,
                      const SpectralView<const float>& b, bool conj_b, const SpectralView<float>& out) {
    const auto block = kernels().spectral_product_block;
    const int64_t bin_blocks = (shape.bins + kBinsPerBlock - 1) / kBinsPerBlock;
    const int64_t units = shape.groups * bin_blocks;
    ExceptionCollector errors;
    // Dynamic: on a shared machine a thread that loses its core must not hold up the others.
#pragma omp parallel for schedule(dynamic, 4) num_threads(max_threads())
    for (int64_t u = 0; u < units; ++u) errors.run([&] {
        const int64_t g = u / bin_blocks, m0 = (u % bin_blocks) * kBinsPerBlock;
        block(shape, a, b, conj_b, out, g, m0, std::min(shape.bins, m0 + kBinsPerBlock));
    });
    errors.rethrow();
}

}  // namespace sc
