// AVX2 variant of dequant_range; compiled with -mavx2 -mbmi2 -ffp-contract=off and called only after a
// CPU check. Bit-exact with the scalar reference:
// * q <= 3: every value of a scale run is one of 2^q sums, so the run's table of those sums is built
//   with the reference formula and looked up per lane (vpermps);
// * q >= 4: the reference additions, in the same order, eight lanes at a time.
// Masked lanes are cleared with an AND, which yields +0.0 like the reference. A group's offset, when
// the weight has one, is added last, as in the reference.
#include <immintrin.h>

#include <cstdint>

#include "bitops.h"
#include "dequant.h"

namespace sc {

namespace {

constexpr uint64_t kByteSpread = 0x0101010101010101ull;  // pdep target: one bit per byte

// Bits j .. j+7 (any j). The second byte is only read when the bits straddle it, so nothing past
// the byte holding bit j+7 is touched.
inline uint32_t bits8_at(const uint64_t* bits, int64_t j) {
    const uint8_t* p = reinterpret_cast<const uint8_t*>(bits) + (j >> 3);
    const int s = int(j & 7);
    uint32_t v = uint32_t(p[0]) >> s;
    if (s) v |= uint32_t(p[1]) << (8 - s);
    return v & 0xFFu;
}

// Lane i = all-ones where bit i of the byte is set.
inline __m256i mask_lanes(uint32_t byte) {
    const uint64_t spread = _pdep_u64(byte, kByteSpread) * 0xFF;  // 0x00 / 0xFF per byte
    return _mm256_cvtepi8_epi32(_mm_cvtsi64_si128(int64_t(spread)));
}

template <bool Stream>
inline void store8(float* p, __m256 v) {
    if constexpr (Stream)
        _mm256_stream_ps(p, v);  // bypasses the cache: for outputs that will not be reread soon
    else
        _mm256_store_ps(p, v);
}

// Both kernels walk a run 64 positions at a time: one unaligned 64-bit read per plane and for the
// mask, then eight 8-lane steps; a remainder of whole 8-lane steps follows.
template <class Step>
inline void walk_run(const uint64_t* const* planes, const uint64_t* mask, int q, int64_t j, int64_t end, Step&& step) {
    uint64_t plane_bits[kMaxBits];
    for (; j + 64 <= end; j += 64) {
        for (int i = 0; i < q; ++i) plane_bits[i] = read_bits(planes[i], j, 64);
        const uint64_t mask_bits = read_bits(mask, j, 64);
        for (int k = 0; k < 8; ++k) step(j + 8 * k, plane_bits, 8 * k, uint32_t(mask_bits >> (8 * k)) & 0xFFu);
    }
    for (; j + 8 <= end; j += 8) {
        for (int i = 0; i < q; ++i) plane_bits[i] = bits8_at(planes[i], j);
        step(j, plane_bits, 0, bits8_at(mask, j));
    }
}

template <int Q, bool Stream>
void run_lookup(const uint64_t* const* planes, const uint64_t* mask, int64_t j, int64_t end, const float* alpha,
                const float* beta, float* out) {
    alignas(32) float table[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    for (int c = 0; c < (1 << Q); ++c) {  // the reference formula, once per bit pattern
        float acc = (c & 1) ? alpha[0] : -alpha[0];
        for (int i = 1; i < Q; ++i) acc = acc + (((c >> i) & 1) ? alpha[i] : -alpha[i]);
        if (beta) acc = acc + *beta;
        table[c] = acc;
    }
    const __m256 values = _mm256_load_ps(table);
    walk_run(planes, mask, Q, j, end, [&](int64_t at, const uint64_t* bits, int shift, uint32_t mbyte) {
        uint64_t index = _pdep_u64((bits[0] >> shift) & 0xFF, kByteSpread);
        for (int i = 1; i < Q; ++i) index |= _pdep_u64((bits[i] >> shift) & 0xFF, kByteSpread) << i;
        const __m256i lanes = _mm256_cvtepu8_epi32(_mm_cvtsi64_si128(int64_t(index)));
        const __m256 v = _mm256_permutevar8x32_ps(values, lanes);
        store8<Stream>(out + at, _mm256_and_ps(v, _mm256_castsi256_ps(mask_lanes(mbyte))));
    });
}

template <int Q, bool Stream>
void run_blend(const uint64_t* const* planes, const uint64_t* mask, int64_t j, int64_t end, const float* alpha,
               const float* beta, float* out) {
    const __m256 offset = _mm256_set1_ps(beta ? *beta : 0.0f);
    __m256 pos[Q], neg[Q];
    const __m256 sign = _mm256_set1_ps(-0.0f);
    for (int i = 0; i < Q; ++i) {
        pos[i] = _mm256_set1_ps(alpha[i]);
        neg[i] = _mm256_xor_ps(pos[i], sign);
    }
    walk_run(planes, mask, Q, j, end, [&](int64_t at, const uint64_t* bits, int shift, uint32_t mbyte) {
        auto term = [&](int i) {
            const __m256i sel = mask_lanes(uint32_t(bits[i] >> shift) & 0xFFu);
            return _mm256_blendv_ps(neg[i], pos[i], _mm256_castsi256_ps(sel));
        };
        __m256 acc = term(0);
        for (int i = 1; i < Q; ++i) acc = _mm256_add_ps(acc, term(i));
        if (beta) acc = _mm256_add_ps(acc, offset);
        store8<Stream>(out + at, _mm256_and_ps(acc, _mm256_castsi256_ps(mask_lanes(mbyte))));
    });
}

template <bool Stream>
void run_vector(int q, const uint64_t* const* planes, const uint64_t* mask, int64_t j, int64_t end,
                const float* alpha, const float* beta, float* out) {
    switch (q) {
        case 1: return run_lookup<1, Stream>(planes, mask, j, end, alpha, beta, out);
        case 2: return run_lookup<2, Stream>(planes, mask, j, end, alpha, beta, out);
        case 3: return run_lookup<3, Stream>(planes, mask, j, end, alpha, beta, out);
        case 4: return run_blend<4, Stream>(planes, mask, j, end, alpha, beta, out);
        case 5: return run_blend<5, Stream>(planes, mask, j, end, alpha, beta, out);
        case 6: return run_blend<6, Stream>(planes, mask, j, end, alpha, beta, out);
        case 7: return run_blend<7, Stream>(planes, mask, j, end, alpha, beta, out);
        default: return run_blend<8, Stream>(planes, mask, j, end, alpha, beta, out);
    }
}

}  // namespace

void dequant_range_avx2(const ScaleLayout& layout, const uint64_t* const* planes, const uint64_t* mask,
                        int64_t p0, int64_t count, float* out, bool nontemporal) {
    const int q = layout.q;
    for_each_scale_run(layout, p0, count, [&](int64_t a, int64_t b, const float* alpha, const float* beta) {
        int64_t j = a;
        // Scalar head up to a 32-byte aligned output address (vector stores never split lines).
        for (; j < b && (reinterpret_cast<uintptr_t>(out + j) & 31); ++j) out[j] = dequant_one(planes, mask, j, alpha, q, beta);
        const int64_t vec_end = j + ((b - j) & ~int64_t(7));
        if (nontemporal)
            run_vector<true>(q, planes, mask, j, vec_end, alpha, beta, out);
        else
            run_vector<false>(q, planes, mask, j, vec_end, alpha, beta, out);
        for (j = vec_end; j < b; ++j) out[j] = dequant_one(planes, mask, j, alpha, q, beta);
    });
    if (nontemporal) _mm_sfence();  // make the streamed stores visible before the caller reads them
}

}  // namespace sc
