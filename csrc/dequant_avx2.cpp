// AVX2 variant of dequant_range; compiled with -mavx2 -mbmi2 -ffp-contract=off and called only after a
// CPU check. Bit-exact with the scalar reference:
// * q <= 3: every value of a scale run is one of 2^q sums, so the run's table of those sums is built
//   with the reference formula and looked up per lane (vpermps);
// * q >= 4: the reference additions, in the same order, eight lanes at a time.
// Masked lanes are cleared with an AND, which yields +0.0 like the reference.
#include <immintrin.h>

#include <cstdint>

#include "bitops.h"
#include "dequant.h"

namespace sc {

namespace {

constexpr uint64_t kByteSpread = 0x0101010101010101ull;  // pdep target: one bit per byte

inline uint32_t byte_at(const uint64_t* bits, int64_t j) {  // j is a multiple of 8
    return reinterpret_cast<const uint8_t*>(bits)[j >> 3];
}

// Lane i = all-ones where bit i of the byte is set.
inline __m256i mask_lanes(uint32_t byte) {
    const uint64_t spread = _pdep_u64(byte, kByteSpread) * 0xFF;  // 0x00 / 0xFF per byte
    return _mm256_cvtepi8_epi32(_mm_cvtsi64_si128(int64_t(spread)));
}

template <bool Stream>
inline void store8(float* p, __m256 v) {
    if constexpr (Stream)
        _mm256_stream_ps(p, v);
    else
        _mm256_storeu_ps(p, v);
}

template <int Q, bool Stream>
void run_lookup(const uint64_t* const* planes, const uint64_t* mask, int64_t j, int64_t end, const float* alpha,
                float* out) {
    alignas(32) float table[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    for (int c = 0; c < (1 << Q); ++c) {  // the reference formula, once per bit pattern
        float acc = (c & 1) ? alpha[0] : -alpha[0];
        for (int i = 1; i < Q; ++i) acc = acc + (((c >> i) & 1) ? alpha[i] : -alpha[i]);
        table[c] = acc;
    }
    const __m256 values = _mm256_load_ps(table);
    for (; j + 8 <= end; j += 8) {
        uint64_t index = _pdep_u64(byte_at(planes[0], j), kByteSpread);
        for (int i = 1; i < Q; ++i) index |= _pdep_u64(byte_at(planes[i], j), kByteSpread) << i;
        const __m256i lanes = _mm256_cvtepu8_epi32(_mm_cvtsi64_si128(int64_t(index)));
        const __m256 v = _mm256_permutevar8x32_ps(values, lanes);
        store8<Stream>(out + j, _mm256_and_ps(v, _mm256_castsi256_ps(mask_lanes(byte_at(mask, j)))));
    }
}

template <int Q, bool Stream>
void run_blend(const uint64_t* const* planes, const uint64_t* mask, int64_t j, int64_t end, const float* alpha,
               float* out) {
    __m256 pos[Q], neg[Q];
    const __m256 sign = _mm256_set1_ps(-0.0f);
    for (int i = 0; i < Q; ++i) {
        pos[i] = _mm256_set1_ps(alpha[i]);
        neg[i] = _mm256_xor_ps(pos[i], sign);
    }
    for (; j + 8 <= end; j += 8) {
        __m256 acc = _mm256_blendv_ps(neg[0], pos[0], _mm256_castsi256_ps(mask_lanes(byte_at(planes[0], j))));
        for (int i = 1; i < Q; ++i)
            acc = _mm256_add_ps(
                acc, _mm256_blendv_ps(neg[i], pos[i], _mm256_castsi256_ps(mask_lanes(byte_at(planes[i], j)))));
        store8<Stream>(out + j, _mm256_and_ps(acc, _mm256_castsi256_ps(mask_lanes(byte_at(mask, j)))));
    }
}

template <bool Stream>
void run_vector(int q, const uint64_t* const* planes, const uint64_t* mask, int64_t j, int64_t end,
                const float* alpha, float* out) {
    switch (q) {
        case 1: return run_lookup<1, Stream>(planes, mask, j, end, alpha, out);
        case 2: return run_lookup<2, Stream>(planes, mask, j, end, alpha, out);
        case 3: return run_lookup<3, Stream>(planes, mask, j, end, alpha, out);
        case 4: return run_blend<4, Stream>(planes, mask, j, end, alpha, out);
        case 5: return run_blend<5, Stream>(planes, mask, j, end, alpha, out);
        case 6: return run_blend<6, Stream>(planes, mask, j, end, alpha, out);
        case 7: return run_blend<7, Stream>(planes, mask, j, end, alpha, out);
        default: return run_blend<8, Stream>(planes, mask, j, end, alpha, out);
    }
}

}  // namespace

void dequant_range_avx2(const ScaleLayout& layout, const uint64_t* const* planes, const uint64_t* mask,
                        int64_t p0, int64_t count, float* out) {
    const int q = layout.q;
    for_each_scale_run(layout, p0, count, [&](int64_t a, int64_t b, const float* alpha) {
        int64_t j = a;
        // Scalar head up to a multiple of 8, so that each vector step reads whole bytes.
        for (; j < b && (j & 7); ++j) out[j] = dequant_one(planes, mask, j, alpha, q);
        const int64_t vec_end = j + ((b - j) & ~int64_t(7));
        // Streaming stores skip the read-for-ownership of output lines that will not be reread
        // soon; they need 32-byte aligned addresses.
        if ((reinterpret_cast<uintptr_t>(out + j) & 31) == 0)
            run_vector<true>(q, planes, mask, j, vec_end, alpha, out);
        else
            run_vector<false>(q, planes, mask, j, vec_end, alpha, out);
        for (j = vec_end; j < b; ++j) out[j] = dequant_one(planes, mask, j, alpha, q);
    });
    _mm_sfence();  // make the streamed stores visible before the caller reads the output
}

}  // namespace sc
