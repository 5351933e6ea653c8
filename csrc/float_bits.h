// Floats held as their bits: float32 in uint32 words, and IEEE binary16 ("half") in uint16,
// converted exactly. The int8 kernels keep a weight's plane scales as float16 when every one of them
// is a float16 value (float16 scales in the stream), which cuts their share of the bytes read per
// call.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>

namespace sc {

inline float float_of_bits(uint32_t b) {
    float f;
    std::memcpy(&f, &b, sizeof f);
    return f;
}
inline uint32_t bits_of_float(float f) {
    uint32_t b;
    std::memcpy(&b, &f, sizeof b);
    return b;
}

// The float whose float16 bits are h (every float16 is a float: exact, infinities included).
inline float float_of_half(uint16_t h) {
    const uint32_t sign = uint32_t(h >> 15) << 31, exponent = (h >> 10) & 31u, mantissa = h & 1023u;
    if (exponent == 0) {  // zero or subnormal: mantissa * 2^-24
        const float v = std::ldexp(float(mantissa), -24);
        return sign ? -v : v;
    }
    // NaNs come out quiet, as VCVTPH2PS makes them
    return float_of_bits(exponent == 31 ? sign | 0x7F800000u | (mantissa << 13) | (mantissa ? 0x400000u : 0u)
                                        : sign | ((exponent + 112u) << 23) | (mantissa << 13));
}

// The float16 bits of f into h when f is exactly a float16 value (finite, zeros of either sign
// included); false otherwise, h unchanged. Integer operations on f's bits only, so the answer does
// not depend on the floating-point environment (denormals-are-zero would turn float denormals into
// zeros).
inline bool half_of_float(float f, uint16_t& h) {
    const uint32_t bits = bits_of_float(f);
    const uint16_t sign = uint16_t((bits >> 16) & 0x8000u);
    const int exponent = int((bits >> 23) & 0xFFu) - 127;
    const uint32_t mantissa = bits & 0x7FFFFFu;
    if ((bits & 0x7FFFFFFFu) == 0) {  // a zero
        h = sign;
        return true;
    }
    if (exponent > 15 || exponent < -24) return false;  // inf and NaN (128), float denormals (-127), out of range
    if (exponent >= -14) {  // a normal float16: the 13 low mantissa bits must be 0
        if (mantissa & 0x1FFFu) return false;
        h = uint16_t(sign | uint16_t((exponent + 15) << 10) | uint16_t(mantissa >> 13));
        return true;
    }
    // a subnormal float16 m * 2^-24: m = (2^23 + mantissa) * 2^(exponent + 1), the bits shifted out 0
    const uint32_t significand = 0x800000u | mantissa;
    const int shift = -exponent - 1;  // 14 .. 23
    if (significand & ((1u << shift) - 1u)) return false;
    h = uint16_t(sign | uint16_t(significand >> shift));
    return true;
}

}  // namespace sc
