#include "slice_layout.h"

#include <algorithm>
#include <stdexcept>
#include <string>

#include "bitops.h"

namespace sc {

namespace {

uint64_t splitmix_next(uint64_t& state) {
    state += 0x9E3779B97F4A7C15ull;
    uint64_t z = state;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

inline uint64_t rotl(uint64_t v, int r) { return r ? (v << r) | (v >> (64 - r)) : v; }
inline uint64_t rotr(uint64_t v, int r) { return r ? (v >> r) | (v << (64 - r)) : v; }

}  // namespace

void transpose64(uint64_t* a) {
    uint64_t m = 0x00000000FFFFFFFFull;
    for (int j = 32; j != 0; j >>= 1, m ^= (m << j)) {
        for (int k = 0; k < 64; k = ((k | j) + 1) & ~j) {
            const uint64_t t = ((a[k] >> j) ^ a[k | j]) & m;
            a[k | j] ^= t;
            a[k] ^= t << j;
        }
    }
}

SliceLayout::SliceLayout(const XorNetwork& net, int64_t length, LayoutKind kind, int group_bands, uint64_t seed)
    : n_out_(net.n_out), length_(length), kind_(kind), group_bands_(group_bands), seed_(seed) {
    if (group_bands < 1 || group_bands > kMaxGroupBands)
        throw std::invalid_argument("group_bands must be between 1 and " + std::to_string(kMaxGroupBands));
    slices_ = (length + n_out_ - 1) / n_out_;
    const int64_t per_group = 64 * int64_t(group_bands);
    const int64_t scattered_slices = kind == LayoutKind::scatter ? (slices_ / 64) * 64 : 0;
    for (int64_t s = 0; s < scattered_slices; s += per_group) {
        const int64_t n = std::min(per_group, scattered_slices - s);
        groups_.push_back({s, n, s * n_out_, n * n_out_, Placement::scattered, int(n / 64 * n_out_)});
    }
    if (kind == LayoutKind::scatter && scattered_slices < slices_) {
        const int64_t n = slices_ - scattered_slices;  // fewer than 64: the interleaved tail
        groups_.push_back({scattered_slices, n, scattered_slices * n_out_, n * n_out_, Placement::interleaved, 0});
    }
    // The linear layout is cut into groups of the same size so that decoding works on cache-sized
    // pieces.
    for (int64_t s = kind == LayoutKind::scatter ? slices_ : 0; s < slices_; s += per_group) {
        const int64_t n = std::min(per_group, slices_ - s);
        groups_.push_back({s, n, s * n_out_, n * n_out_, Placement::linear, 0});
    }
    for (const SliceGroup& g : groups_) {
        if (g.placement != Placement::scattered) continue;
        Shuffle& sh = (g.words == groups_.front().words) ? full_ : last_;
        if (!sh.perm.empty()) continue;
        const uint64_t w = uint64_t(g.words);
        uint64_t state = seed ^ (w * 0xD1B54A32D192ED03ull);
        sh.perm.resize(size_t(w));
        for (uint32_t i = 0; i < w; ++i) sh.perm[i] = i;
        for (uint64_t i = w - 1; i >= 1; --i) std::swap(sh.perm[i], sh.perm[splitmix_next(state) % (i + 1)]);
        sh.rot.resize(size_t(w));
        for (uint64_t u = 0; u < w; ++u) sh.rot[u] = uint8_t(splitmix_next(state) & 63);
    }
}

const SliceLayout::Shuffle& SliceLayout::shuffle_for(int words) const {
    return (!full_.perm.empty() && int(full_.perm.size()) == words) ? full_ : last_;
}

void SliceLayout::place_band(const SliceGroup& group, int64_t band, const uint64_t* band_words, uint64_t* flat) const {
    if (group.placement == Placement::interleaved) {
        const int r = int(group.slices);
        for (int j = 0; j < n_out_; ++j) or_bits(flat, int64_t(j) * r, band_words[j], r);
        return;
    }
    const Shuffle& sh = shuffle_for(group.words);
    const int64_t u0 = band * n_out_;
    for (int j = 0; j < n_out_; ++j) flat[sh.perm[size_t(u0 + j)]] = rotl(band_words[j], sh.rot[size_t(u0 + j)]);
}

void SliceLayout::to_slice(const SliceGroup& group, const uint64_t* flat, uint64_t* slice_bits) const {
    const int64_t words = (group.positions + 63) / 64;
    if (group.placement == Placement::linear) {
        std::copy(flat, flat + words, slice_bits);
        return;
    }
    std::fill(slice_bits, slice_bits + words, uint64_t(0));
    if (group.placement == Placement::interleaved) {
        const int r = int(group.slices);
        for (int j = 0; j < n_out_; ++j) {
            const uint64_t w = read_bits(flat, int64_t(j) * r, r);
            for (int s = 0; s < r; ++s)
                if ((w >> s) & 1) or_bits(slice_bits, int64_t(s) * n_out_ + j, 1, 1);
        }
        return;
    }
    const Shuffle& sh = shuffle_for(group.words);
    uint64_t block[64];
    for (int64_t band = 0; band < group.slices / 64; ++band) {
        for (int j0 = 0; j0 < n_out_; j0 += 64) {
            const int width = std::min(64, n_out_ - j0);
            for (int i = 0; i < 64; ++i) {
                const int64_t u = band * n_out_ + j0 + i;
                block[i] = i < width ? rotr(flat[sh.perm[size_t(u)]], sh.rot[size_t(u)]) : 0;
            }
            transpose64(block);
            for (int s = 0; s < 64; ++s) or_bits(slice_bits, (band * 64 + s) * n_out_ + j0, block[s], width);
        }
    }
}

int64_t SliceLayout::flat_position(int64_t p) const {
    if (kind_ == LayoutKind::linear) return p;
    const int64_t t = p / n_out_;
    const int j = int(p - t * n_out_);
    const int64_t per_group = 64 * int64_t(group_bands_);
    const SliceGroup& tail = groups_.back();
    if (tail.placement == Placement::interleaved && t >= tail.first_slice)
        return tail.first_pos + int64_t(j) * tail.slices + (t - tail.first_slice);
    const SliceGroup& group = groups_[size_t(t / per_group)];  // scattered groups start every per_group slices
    const Shuffle& sh = shuffle_for(group.words);
    const int64_t local = t - group.first_slice;
    const int64_t u = (local / 64) * n_out_ + j;
    return group.first_pos + 64 * int64_t(sh.perm[size_t(u)]) + ((local % 64 + sh.rot[size_t(u)]) & 63);
}

}  // namespace sc
