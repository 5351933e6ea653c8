#include "spectral_product.h"

#include <algorithm>

#include "cpu_dispatch.h"
#include "parallel.h"

namespace sc {

namespace {

// Bins per work unit. Consecutive bins read neighbouring values of a's rows (the bins are the last
// axis of the spectra), so a unit walks several of them while those cache lines are still in L1.
constexpr int64_t kBinsPerBlock = 8;

}  // namespace

void spectral_product_block_scalar(const SpectralProductShape& shape, const SpectralView<const float>& a,
                                   const SpectralView<const float>& b, bool conj_b, const SpectralView<float>& out,
                                   bool accumulate, int64_t g, int64_t m0, int64_t m1) {
    for (int64_t m = m0; m < m1; ++m)
        for (int64_t i = 0; i < shape.rows; ++i)
            spectral_detail::product_reference(shape, a, b, conj_b, out, accumulate, g, m, i, 0, shape.cols);
}

void spectral_product(const SpectralProductShape& shape, const SpectralView<const float>& a,
                      const SpectralView<const float>& b, bool conj_b, const SpectralView<float>& out,
                      bool accumulate) {
    auto block = &spectral_product_block_scalar;
#ifdef SPARSECODEC_HAS_AVX2
    if (use_avx2()) block = &spectral_product_block_avx2;
#endif
    const int64_t bin_blocks = (shape.bins + kBinsPerBlock - 1) / kBinsPerBlock;
    const int64_t units = shape.groups * bin_blocks;
    ExceptionCollector errors;
#pragma omp parallel for schedule(static) num_threads(max_threads())
    for (int64_t u = 0; u < units; ++u) errors.run([&] {
        const int64_t g = u / bin_blocks, m0 = (u % bin_blocks) * kBinsPerBlock;
        block(shape, a, b, conj_b, out, accumulate, g, m0, std::min(shape.bins, m0 + kBinsPerBlock));
    });
    errors.rethrow();
}

}  // namespace sc
