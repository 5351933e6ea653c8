#include "matmul_tile.h"

#include <algorithm>

#include "bitops.h"

namespace sc {

void or_bit_range(const uint64_t* src, int64_t src_pos, int64_t n, uint64_t* dst, int64_t dst_pos) {
    if (src_pos % 64 == 0 && dst_pos % 64 == 0) {  // whole words
        const uint64_t* s = src + src_pos / 64;
        uint64_t* d = dst + dst_pos / 64;
        const int64_t full = n / 64;
        for (int64_t i = 0; i < full; ++i) d[i] |= s[i];
        if (n % 64) d[full] |= s[full] & low_mask(int(n % 64));
        return;
    }
    for (int64_t done = 0; done < n; done += 64) {
        const int chunk = int(std::min<int64_t>(64, n - done));
        or_bits(dst, dst_pos + done, read_bits(src, src_pos + done, chunk), chunk);
    }
}

void decode_tile(const MatmulWeight& w, const SliceLayout& layout, int64_t r0, int64_t r1, TileBits& tile,
                 std::vector<uint64_t>& band_buf, std::vector<uint64_t>& group_buf) {
    const int q = w.q();
    const int64_t first = r0 * w.cols, last = r1 * w.cols;  // flat positions [first, last)
    const size_t words = size_t((last - first + 63) / 64 + 2);
    tile.r0 = r0;
    tile.r1 = r1;
    tile.planes.resize(size_t(q));
    const int64_t code_words = w.geo.code_words(*w.net);
    for (int p = 0; p < q; ++p) {
        std::vector<uint64_t>& dst = tile.planes[size_t(p)];
        dst.assign(words, 0);
        // Groups are ordered by position: start at the last one beginning at or before `first`.
        int64_t lo = 0, hi = layout.group_count();
        while (hi - lo > 1) {
            const int64_t mid = (lo + hi) / 2;
            (layout.group(mid).first_pos <= first ? lo : hi) = mid;
        }
        for (int64_t g = lo; g < layout.group_count(); ++g) {
            const SliceGroup& group = layout.group(g);
            const int64_t g0 = group.first_pos, g1 = std::min(w.geo.length, g0 + group.positions);
            if (g0 >= last) break;
            if (g1 <= first) continue;
            const int64_t a = std::max(g0, first), b = std::min(g1, last);
            if (group.placement == Placement::linear) {
                // Consecutive slices: decode only those overlapping [a, b) (a row of an embedding
                // costs its own slices, not the group's).
                const int64_t n_out = w.net->n_out;
                const int64_t s0 = a / n_out, s1 = (b + n_out - 1) / n_out;
                group_buf.assign(size_t(((s1 - s0) * n_out + 63) / 64 + 2), 0);
                decode_slices(*w.net, w.geo, w.code + p * code_words, s0, s1, group_buf.data());
                or_bit_range(group_buf.data(), a - s0 * n_out, b - a, dst.data(), a - first);
                continue;
            }
            decode_group(*w.net, w.geo, layout, group, w.code + p * code_words, band_buf, group_buf);
            or_bit_range(group_buf.data(), a - g0, b - a, dst.data(), a - first);
        }
        w.patches[size_t(p)].for_each_in(first, last, [&](int64_t pos) { flip_bit(dst.data(), pos - first); });
    }
    decode_tile_mask(w, r0, r1, tile, group_buf);
}

void decode_tile_mask(const MatmulWeight& w, int64_t r0, int64_t r1, TileBits& tile, std::vector<uint64_t>& row_buf) {
    const int64_t first = r0 * w.cols, last = r1 * w.cols;
    tile.r0 = r0;
    tile.r1 = r1;
    tile.mask.assign(size_t((last - first + 63) / 64 + 2), 0);
    if (w.mask.bitmap) {
        or_bit_range(w.mask.bitmap, first, last - first, tile.mask.data(), 0);
        return;
    }
    row_buf.resize(size_t(w.mask.lowrank.row_words()));
    for (int64_t r = r0; r < r1; ++r) {
        lowrank_row(w.mask.lowrank, w.mask.left, w.mask.right, r, row_buf.data());
        or_bit_range(row_buf.data(), 0, w.cols, tile.mask.data(), (r - r0) * w.cols);
    }
}

}  // namespace sc
