#include "dequant.h"

#include "bitops.h"
#include "kernel_table.h"

namespace sc {

void dequant_range_scalar(const ScaleLayout& layout, const uint64_t* const* planes, const uint64_t* mask,
                          int64_t p0, int64_t count, float* out) {
    const int q = layout.q;
    for_each_scale_run(layout, p0, count, [&](int64_t a, int64_t b, const float* alpha, const float* beta) {
        for (int64_t j = a; j < b; ++j) out[j] = dequant_one(planes, mask, j, alpha, q, beta);
    });
}

void dequant_range(const ScaleLayout& layout, const uint64_t* const* planes, const uint64_t* mask, int64_t p0,
                   int64_t count, float* out, bool nontemporal) {
    kernels().dequant_range(layout, planes, mask, p0, count, out, nontemporal);
}

}  // namespace sc
