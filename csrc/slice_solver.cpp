#include "slice_solver.h"

#include <algorithm>

#include "bitops.h"

namespace sc {

namespace {

inline uint64_t hash64(uint64_t v) {
    v ^= v >> 33;
    v *= 0xFF51AFD7ED558CCDull;
    v ^= v >> 33;
    return v;
}

inline size_t table_size_for(size_t n) {
    size_t s = 16;
    while (s < 2 * n) s <<= 1;
    return s;
}

// Key 0 is never stored (a zero column or zero pair sum is useless for a nonzero syndrome), so 0
// marks an empty slot.
void table_insert(std::vector<uint64_t>& keys, size_t mask, uint64_t key, size_t& slot_out, bool& fresh) {
    size_t s = size_t(hash64(key)) & mask;
    while (keys[s] != 0 && keys[s] != key) s = (s + 1) & mask;
    fresh = keys[s] == 0;
    keys[s] = key;
    slot_out = s;
}

bool table_find(const std::vector<uint64_t>& keys, size_t mask, uint64_t key, size_t& slot_out) {
    if (key == 0) return false;
    size_t s = size_t(hash64(key)) & mask;
    while (keys[s] != 0) {
        if (keys[s] == key) {
            slot_out = s;
            return true;
        }
        s = (s + 1) & mask;
    }
    return false;
}

}  // namespace

uint64_t SliceSolver::solve(const uint64_t* care_rows, const uint8_t* targets, int k,
                            std::vector<int>& patches) {
    patches.clear();
    uint64_t basis_vec[64], basis_comb[64];
    uint8_t basis_t[64];
    uint64_t pivots = 0;
    int rank = 0;
    dependents_.clear();
    independent_care_index_.clear();
    uint64_t syndrome = 0;

    for (int i = 0; i < k; ++i) {
        uint64_t v = care_rows[i], comb = 0;
        uint8_t t = targets[i];
        while (v) {
            const int p = top_bit(v);
            if (!((pivots >> p) & 1)) break;
            v ^= basis_vec[p];
            comb ^= basis_comb[p];
            t ^= basis_t[p];
        }
        if (v) {
            const int p = top_bit(v);
            basis_vec[p] = v;
            basis_comb[p] = comb ^ (uint64_t(1) << rank);
            basis_t[p] = t;
            pivots |= uint64_t(1) << p;
            independent_care_index_.push_back(i);
            ++rank;
        } else {
            const int d = int(dependents_.size());
            dependents_.push_back({i, comb, t});
            if (d < 64) syndrome |= uint64_t(t) << d;
        }
    }

    std::vector<int>& chosen = chosen_;  // care indices to patch
    chosen.clear();
    const int nd = int(dependents_.size());
    if (nd > 64) {
        // More than 64 dependent rows (a slice far above capacity): patch every dependent row whose
        // parity check fails. Always valid, not minimal.
        for (const Dependent& dep : dependents_)
            if (dep.check) chosen.push_back(dep.care_index);
    } else if (syndrome != 0) {
        columns_.assign(size_t(k), 0);
        for (int d = 0; d < nd; ++d) {
            columns_[size_t(dependents_[size_t(d)].care_index)] = uint64_t(1) << d;
            for (uint64_t c = dependents_[size_t(d)].combination; c; c &= c - 1)
                columns_[size_t(independent_care_index_[size_t(low_bit(c))])] |= uint64_t(1) << d;
        }
        min_weight_patch(syndrome, chosen);
    }

    // Flip the targets of patched independent rows inside the reduced basis, then back-substitute.
    for (int ci : chosen) {
        auto it = std::lower_bound(independent_care_index_.begin(), independent_care_index_.end(), ci);
        if (it == independent_care_index_.end() || *it != ci) continue;  // dependent row: no effect
        const int ordinal = int(it - independent_care_index_.begin());
        for (uint64_t p = pivots; p; p &= p - 1) {
            const int b = low_bit(p);
            basis_t[b] ^= uint8_t((basis_comb[b] >> ordinal) & 1);
        }
    }
    uint64_t x = 0;
    for (uint64_t p = pivots; p; p &= p - 1) {  // ascending pivots: lower bits are already final
        const int b = low_bit(p);
        const uint64_t bit = uint64_t(basis_t[b] ^ parity64(basis_vec[b] & x));
        x |= bit << b;
    }
    patches = chosen;
    std::sort(patches.begin(), patches.end());
    return x;
}

bool SliceSolver::find_in_columns(uint64_t value, int& index) const {
    size_t slot;
    if (!table_find(col_keys_, col_keys_.size() - 1, value, slot)) return false;
    index = col_vals_[slot];
    return true;
}

void SliceSolver::min_weight_patch(uint64_t syndrome, std::vector<int>& chosen) {
    const int k = int(columns_.size());
    // Weight 1 and 2 via a table of column values.
    const size_t csize = table_size_for(size_t(k));
    col_keys_.assign(csize, 0);
    col_vals_.assign(csize, -1);
    for (int i = 0; i < k; ++i) {
        if (columns_[size_t(i)] == 0) continue;
        size_t slot;
        bool fresh;
        table_insert(col_keys_, csize - 1, columns_[size_t(i)], slot, fresh);
        if (fresh) col_vals_[slot] = i;
    }
    int j;
    if (find_in_columns(syndrome, j)) {
        chosen = {j};
        return;
    }
    for (int a = 0; a < k; ++a) {
        if (columns_[size_t(a)] == 0) continue;
        if (find_in_columns(syndrome ^ columns_[size_t(a)], j) && j != a) {
            chosen = {a, j};
            return;
        }
    }
    // Weight 3: every pair plus one column lookup.
    for (int a = 0; a < k; ++a) {
        if (columns_[size_t(a)] == 0) continue;
        for (int b = a + 1; b < k; ++b) {
            if (columns_[size_t(b)] == 0) continue;
            if (find_in_columns(syndrome ^ columns_[size_t(a)] ^ columns_[size_t(b)], j) && j != a && j != b) {
                chosen = {a, b, j};
                return;
            }
        }
    }
    // Weight 4: meet in the middle on pair sums.
    const size_t npairs = size_t(k) * size_t(k - 1) / 2;
    const size_t psize = table_size_for(npairs);
    pair_keys_.assign(psize, 0);
    pair_a_.assign(psize, -1);
    pair_b_.assign(psize, -1);
    for (int a = 0; a < k; ++a) {
        if (columns_[size_t(a)] == 0) continue;
        for (int b = a + 1; b < k; ++b) {
            const uint64_t s = columns_[size_t(a)] ^ columns_[size_t(b)];
            if (s == 0) continue;
            size_t slot;
            bool fresh;
            table_insert(pair_keys_, psize - 1, s, slot, fresh);
            if (fresh) {
                pair_a_[slot] = a;
                pair_b_[slot] = b;
            }
        }
    }
    for (int a = 0; a < k; ++a) {
        if (columns_[size_t(a)] == 0) continue;
        for (int b = a + 1; b < k; ++b) {
            size_t slot;
            if (table_find(pair_keys_, psize - 1, syndrome ^ columns_[size_t(a)] ^ columns_[size_t(b)], slot)) {
                const int c = pair_a_[slot], d = pair_b_[slot];
                if (c != a && c != b && d != a && d != b) {
                    chosen = {a, b, c, d};
                    return;
                }
            }
        }
    }
    greedy_patch(syndrome, chosen);
}

void SliceSolver::greedy_patch(uint64_t syndrome, std::vector<int>& chosen) {
    // Take independent-row columns while one clears at least two syndrome bits (each such patch
    // saves at least one against the fallback), then patch the dependent row of every bit left.
    chosen.clear();
    std::vector<uint8_t> used(columns_.size(), 0);
    for (;;) {
        int best = -1, best_gain = 1;
        for (int ci : independent_care_index_) {
            if (used[size_t(ci)]) continue;
            const int gain = popcount64(syndrome) - popcount64(syndrome ^ columns_[size_t(ci)]);
            if (gain > best_gain) {
                best_gain = gain;
                best = ci;
            }
        }
        if (best < 0) break;
        used[size_t(best)] = 1;
        chosen.push_back(best);
        syndrome ^= columns_[size_t(best)];
    }
    for (uint64_t s = syndrome; s; s &= s - 1) chosen.push_back(dependents_[size_t(low_bit(s))].care_index);
}

}  // namespace sc
