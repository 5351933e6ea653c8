// VPDPBUSD with its accumulator held in one register, for the AVX-512 int8 kernels.
#pragma once

#include <immintrin.h>

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

}  // namespace sc
