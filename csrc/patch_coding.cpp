#include "patch_coding.h"

#include <stdexcept>
#include <string>

#include "bitops.h"

namespace sc {

void care_rank(const uint64_t* mask, int64_t length, const int64_t* positions, int64_t n, int64_t* out) {
    int64_t word = 0, before = 0, last = -1;  // before = set bits in words [0, word)
    for (int64_t i = 0; i < n; ++i) {
        const int64_t p = positions[i];
        if (p <= last || p >= length) throw std::invalid_argument("patch positions must be ascending and inside the plane");
        if (!get_bit(mask, p)) throw std::invalid_argument("patch position " + std::to_string(p) + " is not a kept weight");
        for (; word < (p >> 6); ++word) before += popcount64(mask[word]);
        out[i] = before + popcount64(mask[word] & low_mask(int(p & 63)));
        last = p;
    }
}

void care_select(const uint64_t* mask, int64_t length, const int64_t* indices, int64_t n, int64_t* out) {
    const int64_t words = (length + 63) / 64;
    int64_t word = 0, before = 0, last = -1;
    for (int64_t i = 0; i < n; ++i) {
        const int64_t c = indices[i];
        if (c <= last) throw std::invalid_argument("patch indices must be strictly ascending");
        while (word < words && before + popcount64(mask[word]) <= c) before += popcount64(mask[word++]);
        if (word >= words) throw std::invalid_argument("patch index " + std::to_string(c) + " is beyond the kept weights");
        uint64_t m = mask[word];
        for (int64_t skip = c - before; skip > 0; --skip) m &= m - 1;
        out[i] = word * 64 + low_bit(m);
        last = c;
    }
}

int64_t rice_bits(const uint64_t* values, int64_t n, int k) {
    if (k < 0 || k > 62) throw std::invalid_argument("Rice parameter must be between 0 and 62");
    // Checked: gaps come from the caller, and the total sizes a buffer.
    constexpr uint64_t kLimit = uint64_t(1) << 50;
    uint64_t bits = 0;
    for (int64_t i = 0; i < n; ++i) {
        const uint64_t quotient = values[i] >> k;
        if (quotient > kLimit || (bits += quotient + 1 + uint64_t(k)) > kLimit)
            throw std::invalid_argument("Rice code would exceed 2^50 bits");
    }
    return int64_t(bits);
}

std::vector<uint8_t> rice_encode(const uint64_t* values, int64_t n, int k) {
    const int64_t total = rice_bits(values, n, k);
    std::vector<uint64_t> words(size_t((total + 63) / 64 + 1), 0);
    int64_t pos = 0;
    for (int64_t i = 0; i < n; ++i) {
        for (uint64_t q = values[i] >> k; q > 0;) {  // unary quotient: q ones then a zero
            const int run = q > 64 ? 64 : int(q);
            or_bits(words.data(), pos, low_mask(run), run);
            pos += run;
            q -= uint64_t(run);
        }
        pos += 1;
        if (k) or_bits(words.data(), pos, values[i] & low_mask(k), k);
        pos += k;
    }
    std::vector<uint8_t> out(size_t((total + 7) / 8));
    for (size_t b = 0; b < out.size(); ++b) out[b] = uint8_t(words[b / 8] >> (8 * (b % 8)));
    return out;
}

void rice_decode(const uint8_t* data, int64_t nbytes, int64_t n, int k, uint64_t max_value, uint64_t* out) {
    if (k < 0 || k > 62) throw std::invalid_argument("Rice parameter out of range");
    const int64_t nbits = nbytes * 8;
    auto bit = [&](int64_t p) { return (data[p >> 3] >> (p & 7)) & 1; };
    int64_t pos = 0;
    const uint64_t max_quotient = max_value >> k;
    for (int64_t i = 0; i < n; ++i) {
        uint64_t q = 0;
        for (;;) {
            if (pos >= nbits) throw std::invalid_argument("patch stream ends early");
            if (!bit(pos++)) break;
            if (++q > max_quotient) throw std::invalid_argument("patch stream holds an out-of-range gap");
        }
        if (pos + k > nbits) throw std::invalid_argument("patch stream ends early");
        uint64_t r = 0;
        for (int b = 0; b < k; ++b) r |= uint64_t(bit(pos++)) << b;
        const uint64_t v = (q << k) | r;
        if (v > max_value) throw std::invalid_argument("patch stream holds an out-of-range gap");
        out[i] = v;
    }
    if ((pos + 7) / 8 != nbytes) throw std::invalid_argument("patch stream has trailing bytes");
    for (; pos < nbits; ++pos)
        if (bit(pos)) throw std::invalid_argument("patch stream has nonzero padding");
}

}  // namespace sc
