// IEEE binary16 ("half") values held as their 16 bits, converted exactly: the int8 kernels keep a
// weight's scales as float16 when every one of them is a float16 value (float16 scales in the stream),
// which halves their share of the bytes read per call.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>

namespace sc {

// The float whose float16 bits are h (every float16 is a float: exact, infinities and NaNs included).
inline float float_of_half(uint16_t h) {
    const uint32_t sign = uint32_t(h >> 15) << 31, exponent = (h >> 10) & 31u, mantissa = h & 1023u;
    if (exponent == 0) {  // zero or subnormal: mantissa * 2^-24
        const float v = std::ldexp(float(mantissa), -24);
        return sign ? -v : v;
    }
    const uint32_t bits = exponent == 31 ? sign | 0x7F800000u | (mantissa << 13)
                                         : sign | ((exponent + 112u) << 23) | (mantissa << 13);
    float f;
    std::memcpy(&f, &bits, sizeof f);
    return f;
}

// The float16 bits of f into h when f is exactly a float16 value (finite, zeros of either sign
// included); false otherwise, h unchanged.
inline bool half_of_float(float f, uint16_t& h) {
    if (!std::isfinite(f)) return false;
    const float a = std::fabs(f);
    const uint16_t sign = std::signbit(f) ? 0x8000u : 0u;
    uint16_t candidate;
    if (a < 6.103515625e-05f) {  // below the smallest normal 2^-14: a multiple of 2^-24, or not a float16
        const float units = std::ldexp(a, 24);
        if (units != std::floor(units)) return false;
        candidate = uint16_t(sign | uint16_t(units));
    } else {
        if (a > 65504.0f) return false;
        int e;
        const float fraction = std::frexp(a, &e);  // a = fraction * 2^e, fraction in [0.5, 1)
        const float mantissa = std::ldexp(fraction, 11) - 1024.0f;  // the 10 stored bits, if integral
        if (mantissa != std::floor(mantissa)) return false;
        candidate = uint16_t(sign | uint16_t((e + 14) << 10) | uint16_t(mantissa));
    }
    if (float_of_half(candidate) != f || std::signbit(float_of_half(candidate)) != std::signbit(f)) return false;
    h = candidate;
    return true;
}

}  // namespace sc
