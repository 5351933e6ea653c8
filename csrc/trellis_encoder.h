// Depth >= 2 encoder: Viterbi-style dynamic programming over the shift-register states.
//
// The DP state after slice t is the last depth-1 stored words (x_t, ..., x_{t-depth+2}); moving to
// slice t+1 chooses x_{t+1} and costs the number of care bits of slice t+1 that the window decodes
// wrongly. The minimum over the whole chain is exact, and every mismatch becomes a patch.
//
// Per slice only the care bits matter, so every table row is first compressed to its k care bits.
// The min-plus transition best[new] = min_old key[old] + popcount(u[old] ^ v[new]) is then computed
// either pairwise (2^(2 n_in) pairs, AVX2 kernel) or, when k is small, by a Hamming distance
// transform over the 2^k care patterns (k 2^k steps); both give the same packed minimum.
#pragma once

#include <cstdint>
#include <vector>

#include "xor_network.h"

namespace sc {

// Packed DP values: cost in the high 16 bits, the argmin predecessor word in the low 16 bits.
constexpr uint32_t kTrellisInfCost = 0x7FFF;

// best[n] = min over o < x_count of key[o] + (popcount(u[o] ^ v[n]) << 16), for n < x_count.
void trellis_transition_scalar(const uint32_t* key, const uint64_t* u, const uint64_t* v, int x_count,
                               uint32_t* best);
#ifdef SPARSECODEC_HAS_AVX2
// Same result; requires every u and v below 2^32 and x_count a multiple of 8.
void trellis_transition_avx2(const uint32_t* key, const uint64_t* u, const uint64_t* v, int x_count,
                             uint32_t* best);
#endif
// Same result via a distance transform over the 2^k values u and v can take (all below 2^k).
void trellis_transition_hypercube(const uint32_t* key, const uint64_t* u, const uint64_t* v, int x_count,
                                  int k, std::vector<uint32_t>& scratch, uint32_t* best);

class TrellisEncoder {
public:
    explicit TrellisEncoder(const XorNetwork& net);

    // Encodes the chain of n_slices slices that starts at flat position pos0 of a plane of length
    // plane_len. target/care are the plane's bit arrays. Writes one word per slice to words_out and
    // appends the flat positions of the patched bits (ascending) to patches. Returns the number of
    // patches, which is the DP optimum.
    int64_t encode_chain(const uint64_t* target, const uint64_t* care, int64_t plane_len, int64_t pos0,
                         int64_t n_slices, uint64_t* words_out, std::vector<int64_t>& patches);

private:
    const XorNetwork& net_;
    int n_in_, depth_, words_, x_count_, mid_bits_, state_count_;
    std::vector<uint64_t> lag_tables_;  // [lag][x][word]: output of word x placed at lag
    const uint64_t* lag_row(int lag, uint32_t x) const {
        return lag_tables_.data() + (size_t(lag) * x_count_ + x) * words_;
    }
    // Scratch reused across chains.
    std::vector<uint32_t> cost_, next_cost_, key_, best_, hyper_;
    std::vector<uint16_t> back_;
    std::vector<uint64_t> comp_, u_;

    void transition(const uint64_t* cw, const uint64_t* tw, int k, uint16_t* back_row);
};

}  // namespace sc
