// AVX2 variant of slice decoding; compiled with -mavx2 and called only after a CPU check.
// Identical output to decode_slices_scalar: the table XORs are done four words at a time.
#include <immintrin.h>

#include <algorithm>

#include "plane_codec.h"

namespace sc {

namespace {

// Slices of at most W words (short slices, e.g. depth 2): fixed-size loops the compiler unrolls.
template <int W>
void decode_short_slices(const XorNetwork& net, const PlaneGeometry& geo, const uint64_t* code, int64_t s0,
                         int64_t s1, uint64_t* out) {
    const int n_out = net.n_out;
    const int words = net.out_words;
    WindowCursor cursor(net, geo, code, s0);
    for (int64_t t = s0; t < s1; ++t) {
        if (t > s0) cursor.advance();  // never reads the word after the last slice
        const uint64_t win = cursor.window();
        uint64_t y[W];
        const uint64_t* first = net.table(0, unsigned(win & 255));
        for (int w = 0; w < W; ++w) y[w] = w < words ? first[w] : 0;
        for (int b = 1; b < net.table_count; ++b) {
            const uint64_t* tb = net.table(b, unsigned((win >> (8 * b)) & 255));
            for (int w = 0; w < W; ++w)
                if (w < words) y[w] ^= tb[w];
        }
        const int64_t base = (t - s0) * n_out;
        for (int w = 0; w < W; ++w)
            if (w < words) or_bits(out, base + 64 * int64_t(w), y[w], std::min(64, n_out - 64 * w));
    }
}

}  // namespace

void decode_slices_avx2(const XorNetwork& net, const PlaneGeometry& geo, const uint64_t* code, int64_t s0,
                        int64_t s1, uint64_t* out) {
    if (net.out_words == 1) return decode_short_slices<1>(net, geo, code, s0, s1, out);
    if (net.out_words == 2) return decode_short_slices<2>(net, geo, code, s0, s1, out);
    if (net.out_words <= 4) return decode_short_slices<4>(net, geo, code, s0, s1, out);
    alignas(32) uint64_t y[kMaxNOut / 64 + 4];
    const int n_out = net.n_out;
    const int words = net.out_words;
    const int vec_words = words & ~3;
    WindowCursor cursor(net, geo, code, s0);
    for (int64_t t = s0; t < s1; ++t) {
        if (t > s0) cursor.advance();  // never reads the word after the last slice
        const uint64_t win = cursor.window();
        for (int w = 0; w < vec_words; w += 4) {
            __m256i acc = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(net.table(0, unsigned(win & 255)) + w));
            for (int b = 1; b < net.table_count; ++b)
                acc = _mm256_xor_si256(
                    acc, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(
                             net.table(b, unsigned((win >> (8 * b)) & 255)) + w)));
            _mm256_store_si256(reinterpret_cast<__m256i*>(y + w), acc);
        }
        for (int w = vec_words; w < words; ++w) {
            uint64_t acc = net.table(0, unsigned(win & 255))[w];
            for (int b = 1; b < net.table_count; ++b) acc ^= net.table(b, unsigned((win >> (8 * b)) & 255))[w];
            y[w] = acc;
        }
        const int64_t base = (t - s0) * n_out;
        for (int w = 0; w < words; ++w) or_bits(out, base + 64 * int64_t(w), y[w], std::min(64, n_out - 64 * w));
    }
}

}  // namespace sc
