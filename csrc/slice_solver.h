// Depth-1 encoder for one slice: find the stored word x (n_in <= 64 bits) whose decoded output
// M x matches the care bits of the slice, flipping as few care bits as possible (patches) when no
// exact x exists.
//
// Method: incremental Gaussian elimination over GF(2) on the care rows of M. Rows that reduce to
// zero are dependent; their parity checks define a syndrome. A set J of care positions can be
// patched iff the XOR of their syndrome columns equals the syndrome, so the minimum patch set is a
// minimum-weight solution of that small linear system: searched exactly up to 4 patches
// (meet-in-the-middle on column pairs), greedily beyond (rare: it needs a slice loaded far above
// n_in care bits).
#pragma once

#include <cstdint>
#include <vector>

namespace sc {

class SliceSolver {
public:
    // care_rows[i]: row of M for the i-th care position; targets[i]: its wanted bit.
    // Returns x; fills patches with indices into care_rows (ascending) that decode flipped.
    uint64_t solve(const uint64_t* care_rows, const uint8_t* targets, int k, std::vector<int>& patches);

private:
    struct Dependent {
        int care_index;
        uint64_t combination;  // over independent ordinals
        uint8_t check;         // parity check result: 1 = this row conflicts with the basis
    };
    // Minimum-weight set of columns XORing to `syndrome`; columns_ holds all k columns.
    void min_weight_patch(uint64_t syndrome, std::vector<int>& chosen);
    void greedy_patch(uint64_t syndrome, std::vector<int>& chosen);
    bool find_in_columns(uint64_t value, int& index) const;

    std::vector<Dependent> dependents_;
    std::vector<int> chosen_;
    std::vector<int> independent_care_index_;
    std::vector<uint64_t> columns_;      // syndrome column of each care row
    // Hash table (open addressing) over column values and over pairwise XORs of columns.
    std::vector<uint64_t> col_keys_;
    std::vector<int32_t> col_vals_;
    std::vector<uint64_t> pair_keys_;
    std::vector<int32_t> pair_a_, pair_b_;
};

}  // namespace sc
