// Binary-coding dequantisation with an optional offset: w = sum_i alpha_i * b_i (+ beta), b_i = +1
// where plane bit i is set and -1 where it is clear, masked to +0.0 where the keep-mask is clear.
// Every value model of the Python side (plain BCQ, BCQ with an offset, uniform grids) is expanded to
// these per-group scales and offsets before it reaches a kernel.
//
// The sum is taken in plane order in float32 (acc = +-a_0; acc = acc + (+-a_i); then acc = acc + beta
// when the weight has offsets), which is the exact definition the Python reference uses, so every
// path is bit-exact with it. A weight without offsets adds nothing (not +0.0, which would turn a
// -0.0 sum into +0.0). Built with
// -ffp-contract=off so that no compiler fuses or reorders these additions.
#pragma once

#include <cstdint>

#include "bitops.h"

namespace sc {

constexpr int kMaxBits = 8;

// The reference value of local position j (bits read from planes/mask at j).
// `beta` points at the group's offset, or is null for a weight without offsets.
inline float dequant_one(const uint64_t* const* planes, const uint64_t* mask, int64_t j, const float* alpha,
                         int q, const float* beta) {
    if (!get_bit(mask, j)) return 0.0f;
    float acc = get_bit(planes[0], j) ? alpha[0] : -alpha[0];
    for (int i = 1; i < q; ++i) acc = acc + (get_bit(planes[i], j) ? alpha[i] : -alpha[i]);
    if (beta) acc = acc + *beta;
    return acc;
}

struct ScaleLayout {
    int64_t cols;        // weight columns
    int64_t group_size;  // columns per scale group (cols for per-row scales)
    int64_t groups;      // groups per row = ceil(cols / group_size)
    int q;               // bit-planes
    const float* scales;  // [row][group][plane]
    const float* offsets = nullptr;  // [row][group], or null: no offsets (plain BCQ)
    const float* alpha(int64_t row, int64_t group) const { return scales + (row * groups + group) * q; }
    const float* beta(int64_t row, int64_t group) const { return offsets ? offsets + row * groups + group : nullptr; }
};

// Dequantises flat positions [p0, p0 + count). planes[i] and mask hold the bits of those positions
// starting at bit 0; out[j] receives position p0 + j. `nontemporal` asks for cache-bypassing stores,
// right for large outputs that are not reread soon (the result is the same either way).
void dequant_range(const ScaleLayout& layout, const uint64_t* const* planes, const uint64_t* mask, int64_t p0,
                   int64_t count, float* out, bool nontemporal);
void dequant_range_scalar(const ScaleLayout& layout, const uint64_t* const* planes, const uint64_t* mask,
                          int64_t p0, int64_t count, float* out);
#ifdef SPARSECODEC_HAS_AVX2
void dequant_range_avx2(const ScaleLayout& layout, const uint64_t* const* planes, const uint64_t* mask,
                        int64_t p0, int64_t count, float* out, bool nontemporal);
#endif

// Visits the runs of [p0, p0 + count) that share one scale group: fn(first_local, end_local, alphas,
// beta) with beta null for a weight without offsets.
template <class Fn>
inline void for_each_scale_run(const ScaleLayout& layout, int64_t p0, int64_t count, Fn&& fn) {
    int64_t p = p0;
    const int64_t end = p0 + count;
    while (p < end) {
        const int64_t row = p / layout.cols;
        const int64_t col = p - row * layout.cols;
        const int64_t group = col / layout.group_size;
        int64_t run_end = row * layout.cols + (group + 1) * layout.group_size;
        if (run_end > (row + 1) * layout.cols) run_end = (row + 1) * layout.cols;
        if (run_end > end) run_end = end;
        fn(p - p0, run_end - p0, layout.alpha(row, group), layout.beta(row, group));
        p = run_end;
    }
}

}  // namespace sc
