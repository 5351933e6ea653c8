// The weight of a compressed matmul, and the decoding of a tile of its rows into bit buffers.
//
// A tile holds, for rows [r0, r1), the decoded sign bits of every plane and the keep-mask bits,
// row-major and starting at bit 0 (row r at bit (r - r0) * cols). The XOR planes are decoded group
// by group (the groups overlapping the tile) and the mask is copied from a bitmap or decoded from
// low-rank factors: nothing is ever expanded to floats.
#pragma once

#include <cstdint>
#include <vector>

#include "dequant.h"
#include "lowrank_mask.h"
#include "patch_list.h"
#include "plane_codec.h"

namespace sc {

struct MaskSource {
    const uint64_t* bitmap = nullptr;  // flat keep bits, or null for a low-rank mask
    LowRankGeometry lowrank{};
    const uint64_t* left = nullptr;
    const uint64_t* right = nullptr;
};

struct MatmulWeight {
    const XorNetwork* net;
    PlaneGeometry geo;  // length = rows * cols
    const uint64_t* code;  // q planes of code_words words
    std::vector<PatchList> patches;  // one per plane
    MaskSource mask;
    ScaleLayout scales;  // cols, group_size, groups, q, scales
    int64_t rows, cols;
    int q() const { return scales.q; }
};

constexpr int kMaxPlanes = 8;

// Rows [r0, r1) of decoded bits as the lookup-table kernel reads them: row r starts at bit
// bit0 + (r - r0) * cols of the mask and of every plane buffer.
struct BitRows {
    int64_t r0 = 0, r1 = 0, bit0 = 0;
    const uint64_t* mask = nullptr;
    const uint64_t* planes[kMaxPlanes] = {};
    const uint64_t* plane(int p) const { return planes[p]; }
};

struct TileBits {
    int64_t r0 = 0, r1 = 0;
    std::vector<std::vector<uint64_t>> planes;  // q buffers
    std::vector<uint64_t> mask;
    const uint64_t* plane(int p) const { return planes[size_t(p)].data(); }
    BitRows view() const {
        BitRows v{r0, r1, 0, mask.data(), {}};
        for (size_t p = 0; p < planes.size(); ++p) v.planes[p] = planes[p].data();
        return v;
    }
};

// The decoded planes of every row, kept as a run-time cache for the lookup-table kernel: q bits per
// weight, row r at bit r * cols. The keep-mask is read from the weight's bitmap where it has one
// (the stream's bits are already in this order); only a low-rank mask is expanded here, one bit
// more per weight.
struct DecodedBits {
    int64_t rows = 0, cols = 0;
    std::vector<std::vector<uint64_t>> planes;
    std::vector<uint64_t> mask;  // empty when the weight's bitmap is read instead
    const uint64_t* bitmap = nullptr;  // that bitmap
    // Whether these bits were decoded from w's mask (the planes are checked by shape only).
    bool built_for(const MatmulWeight& w) const { return mask.empty() ? bitmap == w.mask.bitmap : !w.mask.bitmap; }
    const uint64_t* mask_of(const MatmulWeight& w) const { return mask.empty() ? w.mask.bitmap : mask.data(); }
    BitRows view(const MatmulWeight& w, int64_t r0, int64_t r1) const {
        BitRows v{r0, r1, r0 * cols, mask_of(w), {}};
        for (size_t p = 0; p < planes.size(); ++p) v.planes[p] = planes[p].data();
        return v;
    }
    int64_t nbytes() const {
        size_t words = mask.size();
        for (const auto& plane : planes) words += plane.size();
        return int64_t(words * sizeof(uint64_t));
    }
};

// Fills `tile` for rows [r0, r1) (scratch vectors are reused between calls).
void decode_tile(const MatmulWeight& w, const SliceLayout& layout, int64_t r0, int64_t r1, TileBits& tile,
                 std::vector<uint64_t>& band_buf, std::vector<uint64_t>& group_buf);

// Only the keep-mask bits of rows [r0, r1) (tile.mask, tile.r0, tile.r1); row_buf is scratch.
void decode_tile_mask(const MatmulWeight& w, int64_t r0, int64_t r1, TileBits& tile, std::vector<uint64_t>& row_buf);

// Copies n bits from src at bit src_pos to dst at bit dst_pos (dst bits there must be zero).
void or_bit_range(const uint64_t* src, int64_t src_pos, int64_t n, uint64_t* dst, int64_t dst_pos);

}  // namespace sc
