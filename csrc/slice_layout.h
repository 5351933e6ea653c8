// Where the weights of each slice sit in the flattened matrix.
//
// * linear: slice t holds positions [t * n_out, (t + 1) * n_out).
// * scatter: slices are taken 64 at a time ("bands"), and c bands form a group covering the
//   64 * c * n_out positions the group's slices would hold linearly. Inside a group, the bits a band
//   decodes are transposed in 64 x 64 blocks, so that offset j of slices 0..63 forms one 64-bit word
//   u = band * n_out + j; word u is rotated left by rot[u] and stored at word perm[u] of the group.
//   Slice s of band g, offset j therefore holds flat position
//       group start + 64 * perm[u] + ((s + rot[u]) mod 64),   u = g * n_out + j.
//   Every slice samples n_out scattered words of the group, so its count of kept weights is close to
//   the average even when the keep-mask is structured (rows, columns, rectangles), which keeps the
//   XOR code efficient; decoding still only transposes and moves whole words inside an L1-sized
//   group. The slices of a last incomplete band stay linear.
//   perm and rot come from splitmix64(seed XOR (W * 0xD1B54A32D192ED03)), W = words of the group:
//   a Fisher-Yates shuffle (j = next() mod (i + 1) for i = W-1 .. 1), then rot[u] = next() & 63.
//   The r < 64 slices of a last incomplete band are interleaved instead: offset j of tail slice s
//   holds position tail start + j * r + s.
//   (Part of stream format 1's "scatter" layout: never change it.)
//
// Positions at or beyond the plane length (the padding of the last slice) are don't-care.
#pragma once

#include <cstdint>
#include <vector>

#include "xor_network.h"

namespace sc {

enum class LayoutKind : int { linear = 0, scatter = 1 };

constexpr int kMaxGroupBands = 1024;

enum class Placement : int { linear, scattered, interleaved };

struct SliceGroup {
    int64_t first_slice;  // multiple of 64
    int64_t slices;
    int64_t first_pos;    // first_slice * n_out (a multiple of 64)
    int64_t positions;    // slices * n_out (may run past the plane length in the last group)
    Placement placement;
    int words;            // scattered groups: 64-bit words of the group (bands * n_out)
};

class SliceLayout {
public:
    SliceLayout(const XorNetwork& net, int64_t length, LayoutKind kind, int group_bands, uint64_t seed);

    int64_t slices() const { return slices_; }
    int64_t padded_length() const { return slices_ * n_out_; }
    int64_t group_count() const { return int64_t(groups_.size()); }
    const SliceGroup& group(int64_t g) const { return groups_[size_t(g)]; }
    bool identity() const { return kind_ == LayoutKind::linear; }

    // Flat bits of a group (bit 0 = its first position) -> slice-order bits (bit 0 = its first
    // slice's first bit), overwriting ceil(positions / 64) words; what the encoder works on.
    void to_slice(const SliceGroup& group, const uint64_t* flat, uint64_t* slice_bits) const;
    // Stores the n_out words of one band (word j = offset j of the band's slices, slice s at bit s)
    // at their places in the flat bits of a scattered group, or of the interleaved tail (band 0).
    void place_band(const SliceGroup& group, int64_t band, const uint64_t* band_words, uint64_t* flat) const;
    // Flat position of slice-order position p (< padded_length()).
    int64_t flat_position(int64_t p) const;

private:
    struct Shuffle {
        std::vector<uint32_t> perm;
        std::vector<uint8_t> rot;
    };
    const Shuffle& shuffle_for(int words) const;

    int n_out_;
    int64_t length_, slices_;
    LayoutKind kind_;
    int group_bands_;
    uint64_t seed_;
    std::vector<SliceGroup> groups_;
    Shuffle full_, last_;  // a layout has at most two scattered group sizes
};

// Transposes a 64 x 64 bit matrix in place: afterwards bit s of a[i] is bit i of the original a[s].
void transpose64(uint64_t* a);

}  // namespace sc
