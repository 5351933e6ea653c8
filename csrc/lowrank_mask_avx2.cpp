// AVX2 variant of lowrank_row; compiled with -mavx2 and called only after a CPU check. The OR of the
// selected right rows runs four words at a time; block edges are masked exactly as in the scalar
// reference, so the output is identical.
#include <immintrin.h>

#include <algorithm>

#include "bitops.h"
#include "lowrank_mask.h"

namespace sc {

void lowrank_row_avx2(const LowRankGeometry& geo, const uint64_t* left, const uint64_t* right, int64_t i,
                      uint64_t* row_out) {
    const int64_t words = geo.row_words();
    std::fill(row_out, row_out + words, uint64_t(0));
    for_each_selecting_block(geo, left, i, [&](uint64_t sel, int64_t a, int64_t c0, int64_t c1) {
        const int64_t w0 = c0 >> 6, w1 = ((c1 - 1) >> 6) + 1;  // words [w0, w1) hold the block
        // Interior words of the block (fully inside it) are ORed vector-wide.
        const int64_t v0 = (c0 % 64 == 0) ? w0 : w0 + 1;
        const int64_t v1 = (c1 % 64 == 0) ? w1 : w1 - 1;
        int64_t w = v0;
        for (; w + 4 <= v1; w += 4) {
            __m256i acc = _mm256_setzero_si256();
            for (uint64_t s = sel; s; s &= s - 1)
                acc = _mm256_or_si256(acc, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(
                                               right + (a * geo.rank + low_bit(s)) * words + w)));
            __m256i* dst = reinterpret_cast<__m256i*>(row_out + w);
            _mm256_storeu_si256(dst, _mm256_or_si256(_mm256_loadu_si256(dst), acc));
        }
        // Edge words and the remainder: the scalar rule, word by word.
        for (int64_t x = w0; x < v0; ++x) row_out[x] |= lowrank_block_word(geo, sel, right, a, x, c0, c1);
        for (; w < w1; ++w) row_out[w] |= lowrank_block_word(geo, sel, right, a, w, c0, c1);
    });
}

}  // namespace sc
