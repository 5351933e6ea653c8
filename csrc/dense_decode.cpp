#include "dense_decode.h"

#include <algorithm>

#include "cpu_dispatch.h"
#include "parallel.h"

namespace sc {

void decode_dense(const XorNetwork& net, const PlaneGeometry& geo, const uint64_t* code, int q,
                  const std::vector<const int64_t*>& patches, const std::vector<int64_t>& patch_counts,
                  const uint64_t* mask, const ScaleLayout& layout, float* out) {
    const int64_t n_slices = geo.slices(net);
    // ~32k weights per block, in whole multiples of 64 slices so that blocks start on 64-weight
    // boundaries (aligned vector stores).
    const int64_t chunk = 64 * std::max<int64_t>(1, (int64_t(1) << 15) / (64 * net.n_out));
    const int64_t chunks = (n_slices + chunk - 1) / chunk;
    const int64_t code_words = geo.code_words(net);
    // An output well beyond the caches is written with streaming stores.
    const bool nontemporal = geo.length * int64_t(sizeof(float)) > (int64_t(16) << 20);
    ExceptionCollector errors;
#pragma omp parallel num_threads(max_threads())
    {
        std::vector<std::vector<uint64_t>> bufs;  // sized inside the tasks, whose exceptions are collected
        std::vector<const uint64_t*> plane_ptrs;
        std::vector<uint64_t> mask_buf;
#pragma omp for schedule(static)
        for (int64_t c = 0; c < chunks; ++c) errors.run([&] {
            bufs.resize(size_t(q));
            plane_ptrs.resize(size_t(q));
            const int64_t s0 = c * chunk, s1 = std::min(n_slices, s0 + chunk);
            const int64_t first = s0 * net.n_out;
            const int64_t bits = std::min(geo.length, s1 * net.n_out) - first;
            const size_t words = size_t((s1 - s0) * net.n_out / 64 + 2);
            for (int i = 0; i < q; ++i) {
                std::vector<uint64_t>& buf = bufs[size_t(i)];
                buf.assign(words, 0);
                decode_slices(net, geo, code + i * code_words, s0, s1, buf.data());
                const int64_t* begin = patches[size_t(i)];
                const int64_t* end = begin + patch_counts[size_t(i)];
                for (const int64_t* p = std::lower_bound(begin, end, first); p != end && *p < first + bits; ++p)
                    flip_bit(buf.data(), *p - first);
                plane_ptrs[size_t(i)] = buf.data();
            }
            mask_buf.assign(words, 0);
            copy_bits_to_aligned(mask, first, bits, mask_buf.data());
            dequant_range(layout, plane_ptrs.data(), mask_buf.data(), first, bits, out + first, nontemporal);
        });
    }
    errors.rethrow();
}

}  // namespace sc
