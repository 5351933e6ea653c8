// The seeded XOR network M (n_out x window bits) shared by every slice of every bit-plane.
//
// Slice t of a plane decodes as y_t = M * w_t over GF(2), where the window w_t is the
// concatenation x_t | x_{t-1} << n_in | ... | x_{t-depth+1} << n_in*(depth-1) of the stored n_in-bit
// words (depth = 1 is the CVPR 2020 scheme, depth >= 2 the shift-register scheme of ICLR 2022).
// Words before the start of a chain are zero.
//
// The generator is part of the stream format (format version 1) and must never change: row r of
// M is the r-th nonzero value of splitmix64(seed) masked to the window width.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace sc {

// Limits of the supported parameter space (checked again on the Python side with clear messages).
constexpr int kMaxWindowBits = 64;      // n_in * depth for depth 1
constexpr int kMaxTrellisWindow = 20;   // n_in * depth for depth >= 2 (DP cost 2^window per slice)
constexpr int kMaxTrellisStateBits = 12;  // n_in * (depth - 1): DP states per slice
constexpr int kMaxDepth = 4;
constexpr int kMaxNOut = 8192;

struct XorNetwork {
    int n_in = 0;
    int n_out = 0;
    int depth = 0;
    uint64_t seed = 0;
    int window = 0;      // n_in * depth
    int out_words = 0;   // ceil(n_out / 64)
    std::vector<uint64_t> rows;  // n_out rows, window bits each

    // Byte-indexed decode tables: table b, entry v holds the XOR of the columns 8b..8b+7 selected by
    // v, as out_words words. y(window) = XOR_b table(b)[(window >> 8b) & 255].
    int table_count = 0;
    std::vector<uint64_t> tables;
    const uint64_t* table(int b, unsigned v) const {
        return tables.data() + (size_t(b) * 256 + v) * out_words;
    }

    // Bit-sliced decoding (plane_codec.cpp) reads, per output bit r, one entry of each of the
    // (window + 3) / 4 nibble tables: nibble_offsets[r * nibble_groups + g] = 16 g + nibble g of row r.
    int nibble_groups = 0;
    std::vector<uint16_t> nibble_offsets;
    // The same nibbles by group, for the vector decoder: nibbles_by_group[g * padded_n_out + r]
    // (padded_n_out = n_out rounded up to 32, zeros past n_out).
    int padded_n_out = 0;
    std::vector<uint8_t> nibbles_by_group;
    // For windows of whole bytes, the AVX-512 decoders' GF2P8AFFINEQB matrices:
    // byte_matrices[k * window_bytes + j] maps window byte j to output bits 8k .. 8k + 7 (byte 7 - b
    // of the matrix is byte j of row 8k + b); empty when the window is not whole bytes.
    int window_bytes = 0;
    std::vector<uint64_t> byte_matrices;

    XorNetwork(int n_in, int n_out, int depth, uint64_t seed);
    // Writes the n_out decoded bits of one window into y (out_words words).
    void decode_window(uint64_t window, uint64_t* y) const;
    // Bytes of the rows and decode tables above.
    int64_t nbytes() const;
};

// Throws std::invalid_argument naming the parameter when (n_in, n_out, depth) is unsupported.
void check_network_params(int n_in, int n_out, int depth);

}  // namespace sc
