// What the AVX-512 int8 kernels (int8 tables, int8 tiles) share: VPDPBUSD with its accumulator held
// in one register, and the prefetch of the weight's bit blocks ahead of their use.
#pragma once

#include <immintrin.h>

#include <cstdint>

namespace sc {

// acc + VPDPBUSD(u, s): per 32-bit lane, acc += the sum of the 4 products of u's unsigned bytes and
// s's signed bytes (_mm512_dpbusd_epi32(acc, u, s)). GCC 12 models the intrinsic as three inputs and a
// fresh output, and with a dozen or more accumulators live it rotates them through register copies
// and a stack slot on every step of a loop (in the int8-tile product, about 30 extra moves per 16
// products, a third of its speed); the "+v" constraint keeps each accumulator in one register.
inline __m512i dpbusd(__m512i acc, __m512i u, __m512i s) {
    __asm__("vpdpbusd %2, %1, %0" : "+v"(acc) : "v"(u), "v"(s));
    return acc;
}

// How far ahead of the bit block in use the kernels fetch its successors.
constexpr uintptr_t kPrefetchBytes = 8192;

// Fetch the `lines` cache lines that start kPrefetchBytes past `block`. Both kernels read the weight's
// bit blocks in memory order (row block by row block), and at batch 1 a block's lookups take about
// as long as fetching it from memory; the hardware prefetcher does not run far enough ahead to
// overlap the two. A hint: an address past the end of the weight is dropped, never faults, and is
// computed as an integer, not by pointer arithmetic past the array.
inline void prefetch_ahead(const void* block, int lines) {
    const uintptr_t ahead = reinterpret_cast<uintptr_t>(block) + kPrefetchBytes;
    for (int i = 0; i < lines; ++i) _mm_prefetch(reinterpret_cast<const char*>(ahead + 64 * i), _MM_HINT_T0);
}

}  // namespace sc
