// A plane's patch positions as the kernels read them: a view of the caller's array, never copied.
//
// Positions are held as uint32 when the plane has at most 2^32 bits (half the memory of int64,
// which larger planes use). They are checked strictly ascending and inside the plane when the view
// is made; every reader also keeps to the range it asks for, so an array changed afterwards (the
// kernels run without the GIL) can only flip wrong bits inside that range, never write outside it.
#pragma once

#include <cstdint>

namespace sc {

struct PatchList {
    const uint32_t* narrow = nullptr;
    const int64_t* wide = nullptr;  // used when narrow is null
    int64_t count = 0;

    int64_t at(int64_t i) const { return narrow ? int64_t(narrow[i]) : wide[i]; }

    // Index of the first position >= pos.
    int64_t lower_bound(int64_t pos) const {
        int64_t lo = 0, hi = count;
        while (lo < hi) {
            const int64_t mid = lo + (hi - lo) / 2;
            if (at(mid) < pos)
                lo = mid + 1;
            else
                hi = mid;
        }
        return lo;
    }

    // Calls f(position) for every position in [first, last), ascending.
    template <class F>
    void for_each_in(int64_t first, int64_t last, F&& f) const {
        for (int64_t i = lower_bound(first); i < count; ++i) {
            const int64_t p = at(i);
            if (p >= last) break;
            if (p >= first) f(p);
        }
    }
};

}  // namespace sc
