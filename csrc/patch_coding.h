// Storage of patch positions: each plane's patches are stored as their index among the care bits
// (the decoder knows the mask), delta-coded, with a Rice code. Patches are rare and spread roughly
// evenly, so the gaps are close to geometric and Rice coding is within a few percent of their
// entropy, with no per-slice bookkeeping.
#pragma once

#include <cstdint>
#include <vector>

namespace sc {

// Index among the set bits of mask of each (ascending, set) position. Throws std::invalid_argument
// when a position is out of range, not ascending, or not a set bit.
void care_rank(const uint64_t* mask, int64_t length, const int64_t* positions, int64_t n, int64_t* out);
// Inverse: flat position of each (ascending) care index. Throws when an index is out of range or
// the indices are not strictly ascending.
void care_select(const uint64_t* mask, int64_t length, const int64_t* indices, int64_t n, int64_t* out);

// Bits of the Rice code of values with parameter k (0..62); throws std::invalid_argument when k is
// out of range or the code would exceed 2^50 bits.
int64_t rice_bits(const uint64_t* values, int64_t n, int k);
std::vector<uint8_t> rice_encode(const uint64_t* values, int64_t n, int k);
// Decodes exactly n values from exactly ceil(rice_bits / 8) bytes; throws std::invalid_argument
// when the data is damaged (runs past the end, a value above max_value, trailing garbage).
void rice_decode(const uint8_t* data, int64_t nbytes, int64_t n, int k, uint64_t max_value, uint64_t* out);

}  // namespace sc
