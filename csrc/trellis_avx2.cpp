// AVX2 variant of the trellis transition; compiled with -mavx2 and called only after a CPU check.
#include <immintrin.h>

#include "trellis_encoder.h"

namespace sc {

void trellis_transition_avx2(const uint32_t* key, const uint64_t* u, const uint64_t* v, int x_count,
                             uint32_t* best) {
    // Narrow u to 32-bit lanes once (all values fit: k <= 32).
    alignas(32) uint32_t u32[1 << 10];
    for (int o = 0; o < x_count; ++o) u32[o] = uint32_t(u[o]);
    const __m256i nibble_counts =
        _mm256_setr_epi8(0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4, 0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4);
    const __m256i low4 = _mm256_set1_epi8(0x0F);
    const __m256i ones8 = _mm256_set1_epi8(1);
    const __m256i ones16 = _mm256_set1_epi16(1);
    for (int n = 0; n < x_count; ++n) {
        const __m256i vn = _mm256_set1_epi32(int(uint32_t(v[n])));
        __m256i acc = _mm256_set1_epi32(int(((kTrellisInfCost + 64u) << 16) | 0xFFFFu));
        for (int o = 0; o < x_count; o += 8) {
            const __m256i x = _mm256_xor_si256(_mm256_load_si256(reinterpret_cast<const __m256i*>(u32 + o)), vn);
            const __m256i lo = _mm256_and_si256(x, low4);
            const __m256i hi = _mm256_and_si256(_mm256_srli_epi16(x, 4), low4);
            const __m256i per_byte = _mm256_add_epi8(_mm256_shuffle_epi8(nibble_counts, lo),
                                                     _mm256_shuffle_epi8(nibble_counts, hi));
            const __m256i per_lane = _mm256_madd_epi16(_mm256_maddubs_epi16(per_byte, ones8), ones16);
            const __m256i val = _mm256_add_epi32(
                _mm256_loadu_si256(reinterpret_cast<const __m256i*>(key + o)), _mm256_slli_epi32(per_lane, 16));
            acc = _mm256_min_epu32(acc, val);
        }
        __m128i m = _mm_min_epu32(_mm256_castsi256_si128(acc), _mm256_extracti128_si256(acc, 1));
        m = _mm_min_epu32(m, _mm_shuffle_epi32(m, _MM_SHUFFLE(1, 0, 3, 2)));
        m = _mm_min_epu32(m, _mm_shuffle_epi32(m, _MM_SHUFFLE(2, 3, 0, 1)));
        best[n] = uint32_t(_mm_cvtsi128_si32(m));
    }
}

}  // namespace sc
