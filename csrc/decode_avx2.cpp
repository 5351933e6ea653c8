// AVX2 variant of slice decoding; compiled with -mavx2 and called only after a CPU check.
// Identical output to decode_slices_scalar: the table XORs are done four words at a time.
#include <immintrin.h>

#include <algorithm>

#include "bitops.h"
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

namespace {

// The 16 entries (8 bytes each) of a nibble table as 8 byte planes of 16 bytes: plane b, byte v =
// byte b of entry v.
inline void byte_planes(const uint64_t* table, __m128i* planes) {
    // Group each register's two entries by byte: [e0 b0, e1 b0, e0 b1, e1 b1, ...].
    const __m128i pair_bytes = _mm_setr_epi8(0, 8, 1, 9, 2, 10, 3, 11, 4, 12, 5, 13, 6, 14, 7, 15);
    __m128i r[8];
    for (int i = 0; i < 8; ++i)
        r[i] = _mm_shuffle_epi8(_mm_loadu_si128(reinterpret_cast<const __m128i*>(table + 2 * i)), pair_bytes);
    // 8 x 8 transpose of 16-bit elements: register i, element b -> register b, element i.
    __m128i a[8], c[8];
    for (int i = 0; i < 4; ++i) {
        a[2 * i] = _mm_unpacklo_epi16(r[2 * i], r[2 * i + 1]);
        a[2 * i + 1] = _mm_unpackhi_epi16(r[2 * i], r[2 * i + 1]);
    }
    for (int i = 0; i < 2; ++i)
        for (int h = 0; h < 2; ++h) {
            c[4 * i + 2 * h] = _mm_unpacklo_epi32(a[4 * i + h], a[4 * i + 2 + h]);
            c[4 * i + 2 * h + 1] = _mm_unpackhi_epi32(a[4 * i + h], a[4 * i + 2 + h]);
        }
    for (int k = 0; k < 4; ++k) {
        planes[2 * k] = _mm_unpacklo_epi64(c[k], c[4 + k]);
        planes[2 * k + 1] = _mm_unpackhi_epi64(c[k], c[4 + k]);
    }
}

}  // namespace

void band_outputs_avx2(const uint64_t* x, const XorNetwork& net, uint64_t* out) {
    const int groups = net.nibble_groups;
    // Nibble tables (as in the scalar path), then their byte planes broadcast to both lanes.
    uint64_t tables[16 * 16];
    __m256i planes[16][8];
    for (int g = 0; g < groups; ++g) {
        uint64_t* t = tables + 16 * g;
        t[0] = 0;
        for (int i = 0; i < 4; ++i) {
            const uint64_t col = 4 * g + i < net.window ? x[4 * g + i] : 0;
            for (int v = 0; v < (1 << i); ++v) t[v | (1 << i)] = t[v] ^ col;
        }
        __m128i p[8];
        byte_planes(t, p);
        for (int b = 0; b < 8; ++b) planes[g][b] = _mm256_broadcastsi128_si256(p[b]);
    }
    alignas(32) uint64_t block[32];
    for (int j0 = 0; j0 < net.n_out; j0 += 32) {
        // acc[b] byte j (per 128-bit lane: outputs j0..j0+15 in lane 0, j0+16..j0+31 in lane 1).
        __m256i acc[8];
        for (int b = 0; b < 8; ++b) acc[b] = _mm256_setzero_si256();
        for (int g = 0; g < groups; ++g) {
            const __m256i idx = _mm256_loadu_si256(
                reinterpret_cast<const __m256i*>(net.nibbles_by_group.data() + size_t(g) * net.padded_n_out + j0));
            for (int b = 0; b < 8; ++b) acc[b] = _mm256_xor_si256(acc[b], _mm256_shuffle_epi8(planes[g][b], idx));
        }
        // Back to words: per lane, an 8 x 16 byte transpose.
        const __m256i t01l = _mm256_unpacklo_epi8(acc[0], acc[1]), t01h = _mm256_unpackhi_epi8(acc[0], acc[1]);
        const __m256i t23l = _mm256_unpacklo_epi8(acc[2], acc[3]), t23h = _mm256_unpackhi_epi8(acc[2], acc[3]);
        const __m256i t45l = _mm256_unpacklo_epi8(acc[4], acc[5]), t45h = _mm256_unpackhi_epi8(acc[4], acc[5]);
        const __m256i t67l = _mm256_unpacklo_epi8(acc[6], acc[7]), t67h = _mm256_unpackhi_epi8(acc[6], acc[7]);
        // 32-bit quads of bytes 0..3 and 4..7 for outputs (lane-local) 0..3, 4..7, 8..11, 12..15.
        const __m256i q0 = _mm256_unpacklo_epi16(t01l, t23l), q1 = _mm256_unpackhi_epi16(t01l, t23l);
        const __m256i q2 = _mm256_unpacklo_epi16(t01h, t23h), q3 = _mm256_unpackhi_epi16(t01h, t23h);
        const __m256i r0 = _mm256_unpacklo_epi16(t45l, t67l), r1 = _mm256_unpackhi_epi16(t45l, t67l);
        const __m256i r2 = _mm256_unpacklo_epi16(t45h, t67h), r3 = _mm256_unpackhi_epi16(t45h, t67h);
        const __m256i w[8] = {_mm256_unpacklo_epi32(q0, r0), _mm256_unpackhi_epi32(q0, r0),
                              _mm256_unpacklo_epi32(q1, r1), _mm256_unpackhi_epi32(q1, r1),
                              _mm256_unpacklo_epi32(q2, r2), _mm256_unpackhi_epi32(q2, r2),
                              _mm256_unpacklo_epi32(q3, r3), _mm256_unpackhi_epi32(q3, r3)};
        // w[k] holds lane-local outputs 2k, 2k+1 in each lane.
        for (int k = 0; k < 8; ++k) {
            _mm_store_si128(reinterpret_cast<__m128i*>(block + 2 * k), _mm256_castsi256_si128(w[k]));
            _mm_store_si128(reinterpret_cast<__m128i*>(block + 16 + 2 * k), _mm256_extracti128_si256(w[k], 1));
        }
        const int n = std::min(32, net.n_out - j0);
        for (int i = 0; i < n; ++i) out[j0 + i] = block[i];
    }
}

bool band_inputs_bmi2(const XorNetwork& net, const PlaneGeometry& geo, const uint64_t* code, int64_t t0, uint64_t* x) {
    const int n_in = net.n_in;
    if (n_in > 16 || 64 % n_in != 0 || t0 % 64 != 0) return false;
    // The band's stored words are n_in whole code words; bit c of every word of each code word is one
    // parallel-bit-extract. Older lags are the same bits shifted by the lag, with the words of the
    // slices just before the band (inside the chain) shifted in.
    const int per_word = 64 / n_in;  // slices per code word
    const uint64_t* words = code + t0 / 64 * n_in;
    uint64_t spread = 0;
    for (int k = 0; k < per_word; ++k) spread |= uint64_t(1) << (k * n_in);
    for (int c = 0; c < n_in; ++c) {
        uint64_t v = 0;
        for (int w = 0; w < n_in; ++w) v |= _pext_u64(words[w], spread << c) << (w * per_word);
        x[c] = v;
    }
    const int64_t chain_start = (t0 / geo.chain) * geo.chain;
    uint64_t before[3] = {0, 0, 0};  // words of slices t0 - 1, t0 - 2, t0 - 3 (zero before the chain)
    for (int lag = 1; lag < net.depth; ++lag)
        if (t0 - lag >= chain_start) before[lag - 1] = read_bits(code, (t0 - lag) * n_in, n_in);
    for (int lag = 1; lag < net.depth; ++lag) {
        for (int c = 0; c < n_in; ++c) {
            uint64_t carry = 0;  // slices t0 - lag .. t0 - 1 enter at bits 0 .. lag - 1
            for (int s = 0; s < lag; ++s) carry |= ((before[lag - 1 - s] >> c) & 1) << s;
            x[lag * n_in + c] = (x[c] << lag) | carry;
        }
    }
    return true;
}

}  // namespace sc
