#include "xor_network.h"

#include <stdexcept>
#include <string>

#include "bitops.h"

namespace sc {

namespace {

struct SplitMix64 {
    uint64_t state;
    uint64_t next() {
        state += 0x9E3779B97F4A7C15ull;
        uint64_t z = state;
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
        return z ^ (z >> 31);
    }
};

}  // namespace

void check_network_params(int n_in, int n_out, int depth) {
    if (depth < 1 || depth > kMaxDepth)
        throw std::invalid_argument("depth must be between 1 and " + std::to_string(kMaxDepth) +
                                    ", got " + std::to_string(depth));
    if (n_in < 1) throw std::invalid_argument("n_in must be at least 1, got " + std::to_string(n_in));
    if (depth == 1 && n_in > kMaxWindowBits)
        throw std::invalid_argument("n_in must be at most 64 with depth 1, got " + std::to_string(n_in));
    if (depth > 1 && n_in * depth > kMaxTrellisWindow)
        throw std::invalid_argument("n_in * depth must be at most " + std::to_string(kMaxTrellisWindow) +
                                    " with depth >= 2, got " + std::to_string(n_in * depth));
    if (depth > 1 && n_in * (depth - 1) > kMaxTrellisStateBits)
        throw std::invalid_argument("n_in * (depth - 1) must be at most " +
                                    std::to_string(kMaxTrellisStateBits) + ", got " +
                                    std::to_string(n_in * (depth - 1)));
    if (n_out < n_in || n_out > kMaxNOut)
        throw std::invalid_argument("n_out must be between n_in (" + std::to_string(n_in) + ") and " +
                                    std::to_string(kMaxNOut) + ", got " + std::to_string(n_out));
}

XorNetwork::XorNetwork(int n_in_, int n_out_, int depth_, uint64_t seed_)
    : n_in(n_in_), n_out(n_out_), depth(depth_), seed(seed_) {
    check_network_params(n_in, n_out, depth);
    window = n_in * depth;
    out_words = int(ceil_div(n_out, 64));
    rows.resize(size_t(n_out));
    SplitMix64 rng{seed};
    const uint64_t mask = low_mask(window);
    for (int r = 0; r < n_out; ++r) {
        uint64_t row = 0;
        while (row == 0) row = rng.next() & mask;  // an all-zero row would decode to a constant
        rows[size_t(r)] = row;
    }
    nibble_groups = int(ceil_div(window, 4));
    nibble_offsets.resize(size_t(n_out) * size_t(nibble_groups));
    for (int r = 0; r < n_out; ++r)
        for (int g = 0; g < nibble_groups; ++g)
            nibble_offsets[size_t(r) * size_t(nibble_groups) + size_t(g)] =
                uint16_t(16 * g + ((rows[size_t(r)] >> (4 * g)) & 15));
    padded_n_out = int(ceil_div(n_out, 32) * 32);
    nibbles_by_group.assign(size_t(nibble_groups) * size_t(padded_n_out), 0);
    for (int g = 0; g < nibble_groups; ++g)
        for (int r = 0; r < n_out; ++r)
            nibbles_by_group[size_t(g) * size_t(padded_n_out) + size_t(r)] = uint8_t((rows[size_t(r)] >> (4 * g)) & 15);
    if (window % 8 == 0) {
        window_bytes = window / 8;
        byte_matrices.assign(size_t(ceil_div(n_out, 8)) * size_t(window_bytes), 0);
        for (int r = 0; r < n_out; ++r)
            for (int j = 0; j < window_bytes; ++j)
                byte_matrices[size_t(r / 8) * size_t(window_bytes) + size_t(j)] |= ((rows[size_t(r)] >> (8 * j)) & 255)
                                                                                  << (8 * (7 - r % 8));
    }
    // Columns, then byte tables built by doubling (entry v | bit = entry v ^ column).
    table_count = int(ceil_div(window, 8));
    tables.assign(size_t(table_count) * 256 * size_t(out_words), 0);
    std::vector<uint64_t> columns(size_t(window) * size_t(out_words), 0);
    for (int r = 0; r < n_out; ++r)
        for (uint64_t bits = rows[size_t(r)]; bits; bits &= bits - 1)
            columns[size_t(low_bit(bits)) * out_words + (r >> 6)] |= uint64_t(1) << (r & 63);
    for (int b = 0; b < table_count; ++b) {
        const int width = (window - 8 * b) < 8 ? window - 8 * b : 8;
        for (int i = 0; i < width; ++i) {
            const uint64_t* col = columns.data() + size_t(8 * b + i) * out_words;
            for (unsigned v = 0; v < (1u << i); ++v) {
                const uint64_t* src = table(b, v);
                uint64_t* dst = const_cast<uint64_t*>(table(b, v | (1u << i)));
                for (int w = 0; w < out_words; ++w) dst[w] = src[w] ^ col[w];
            }
        }
    }
}

int64_t XorNetwork::nbytes() const {
    return int64_t((rows.size() + tables.size() + byte_matrices.size()) * sizeof(uint64_t) +
                   nibble_offsets.size() * sizeof(uint16_t) + nibbles_by_group.size());
}

void XorNetwork::decode_window(uint64_t win, uint64_t* y) const {
    const uint64_t* t0 = table(0, unsigned(win & 255));
    for (int w = 0; w < out_words; ++w) y[w] = t0[w];
    for (int b = 1; b < table_count; ++b) {
        const uint64_t* t = table(b, unsigned((win >> (8 * b)) & 255));
        for (int w = 0; w < out_words; ++w) y[w] ^= t[w];
    }
}

}  // namespace sc
