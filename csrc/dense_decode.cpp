#include "dense_decode.h"

#include <algorithm>

#include "cpu_dispatch.h"
#include "parallel.h"

namespace sc {

void decode_dense(const XorNetwork& net, const PlaneGeometry& geo, const uint64_t* code, int q,
                  const std::vector<PatchList>& patches,
                  const uint64_t* mask, const ScaleLayout& layout, float* out) {
    const SliceLayout slices = make_layout(net, geo);
    const int64_t groups = slices.group_count();
    const int64_t code_words = geo.code_words(net);
    // An output well beyond the caches is written with streaming stores.
    const bool nontemporal = geo.length * int64_t(sizeof(float)) > (int64_t(16) << 20);
    ExceptionCollector errors;
#pragma omp parallel num_threads(max_threads())
    {
        // Sized inside the tasks, whose exceptions are collected (every thread reaches the loop).
        std::vector<std::vector<uint64_t>> planes;
        std::vector<const uint64_t*> plane_ptrs;
        std::vector<uint64_t> band_buf, mask_buf;
#pragma omp for schedule(static)
        for (int64_t g = 0; g < groups; ++g) errors.run([&] {
            const SliceGroup& group = slices.group(g);
            planes.resize(size_t(q));
            plane_ptrs.resize(size_t(q));
            const int64_t first = group.first_pos;
            const int64_t bits = std::min(geo.length, first + group.positions) - first;
            for (int i = 0; i < q; ++i) {
                std::vector<uint64_t>& flat = planes[size_t(i)];
                decode_group(net, geo, slices, group, code + i * code_words, band_buf, flat);
                patches[size_t(i)].for_each_in(first, first + bits, [&](int64_t pos) { flip_bit(flat.data(), pos - first); });
                plane_ptrs[size_t(i)] = flat.data();
            }
            mask_buf.assign(size_t((group.positions + 63) / 64 + 2), 0);
            copy_bits_to_aligned(mask, first, bits, mask_buf.data());
            dequant_range(layout, plane_ptrs.data(), mask_buf.data(), first, bits, out + first, nontemporal);
        });
    }
    errors.rethrow();
}

}  // namespace sc
