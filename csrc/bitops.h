// Bit-level helpers shared by every kernel.
//
// Bit arrays everywhere in sparsecodec are little-endian: bit i of an array lives in word i/64 at
// position i%64, which is the same layout as numpy.packbits(..., bitorder="little") viewed as
// uint64 on a little-endian machine.
#pragma once

#include <cstdint>
#include <cstddef>

namespace sc {

inline int popcount64(uint64_t v) { return __builtin_popcountll(v); }
inline int parity64(uint64_t v) { return __builtin_parityll(v); }
inline int top_bit(uint64_t v) { return 63 - __builtin_clzll(v); }  // v != 0
inline int low_bit(uint64_t v) { return __builtin_ctzll(v); }       // v != 0

inline uint64_t low_mask(int n) { return n >= 64 ? ~uint64_t(0) : ((uint64_t(1) << n) - 1); }

inline int get_bit(const uint64_t* a, int64_t i) { return int((a[i >> 6] >> (i & 63)) & 1u); }
inline void flip_bit(uint64_t* a, int64_t i) { a[i >> 6] ^= uint64_t(1) << (i & 63); }

// Reads n <= 64 bits starting at bit position pos. Never touches a word past the last one that holds
// a requested bit.
inline uint64_t read_bits(const uint64_t* a, int64_t pos, int n) {
    const int64_t w = pos >> 6;
    const int s = int(pos & 63);
    uint64_t v = a[w] >> s;
    if (s != 0 && s + n > 64) v |= a[w + 1] << (64 - s);
    return v & low_mask(n);
}

// ORs the low n <= 64 bits of v into a (which must hold zeros there) at bit position pos.
inline void or_bits(uint64_t* a, int64_t pos, uint64_t v, int n) {
    v &= low_mask(n);
    const int64_t w = pos >> 6;
    const int s = int(pos & 63);
    a[w] |= v << s;
    if (s != 0 && s + n > 64) a[w + 1] |= v >> (64 - s);
}

// Copies n bits from src starting at bit src_pos into dst starting at bit 0 (dst is overwritten, the
// bits past n in the last word are cleared).
inline void copy_bits_to_aligned(const uint64_t* src, int64_t src_pos, int64_t n, uint64_t* dst) {
    const int64_t full = n >> 6;
    for (int64_t i = 0; i < full; ++i) dst[i] = read_bits(src, src_pos + (i << 6), 64);
    const int rest = int(n & 63);
    if (rest) dst[full] = read_bits(src, src_pos + (full << 6), rest);
}

// Portable parallel-bits-extract: gathers the bits of v selected by mask into the low bits.
inline uint64_t pext_portable(uint64_t v, uint64_t mask) {
    uint64_t out = 0;
    int k = 0;
    while (mask) {
        const uint64_t lowest = mask & (~mask + 1);
        if (v & lowest) out |= uint64_t(1) << k;
        ++k;
        mask ^= lowest;
    }
    return out;
}

inline int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

}  // namespace sc
