// The int8-tile kernel ("int8_tiles") for large batches, computed the way torch's dynamic int8
// computes but with a scale per scale group, from the compressed weight's decoded bits.
//
// Per row r and scale group g the weight is int8: when the group's 2^q values are integer multiples
// n of alpha_0 with |n| <= 127 (a uniform grid, e.g. GPTQ's, with an integral zero point), s_w = alpha_0
// and v = n, which is exact; otherwise s_w = max |value| / 127 and v = lrint(value / s_w). x is
// quantised per batch row b and scale group to unsigned bytes: s_x = max |x| / 127 over the group's
// columns, xq = lrint(x / s_x) + 128. Then, exactly in integers, acc = sum over the group's columns of
// v[r][c] xq[b][c], and per group, g ascending,
//   y = y + (float(acc - 128 * V[g][r]) * s_x[b][g]) * s_w[g][r],   V[g][r] = sum of the group's v,
// in this order on every SIMD level (the AVX-512 kernel equals the scalar one bit for bit).
//
// The int8 values are decoded tile by tile from the bits the int8-table kernel caches
// (LutInt8Weight): per row and scale group a table maps a bit pattern to its int8 value (pruned
// weights are 0), so the extra cache is 2^q bytes and two numbers per row and scale group, and q <= 4.
// A tile of 64 rows is decoded into VPDPBUSD's order ([column / 4][row][4] bytes) once per call and
// thread, and multiplied with the batch, which pays for the decode when the batch is large; a layer
// of few tiles has its batch cut into chunks of lanes, so that every thread gets work.
#pragma once

#include <cstdint>
#include <vector>

#include "lut_int8.h"

namespace sc {

constexpr int64_t kTileRows = 64;  // rows per decoded tile (four zmm of a VNNI step)
constexpr int kTileMaxBits = 4;    // patterns per table: at most 16

struct Int8TileValues {
    int64_t rows = 0, cols = 0, groups = 0, padded_rows = 0;  // padded_rows: rows rounded up to kTileRows
    int q = 0;
    // [row block][group][row in block % 4][row in block / 4][16]: the int8 value of each bit pattern.
    // A block's 16 tables in one group are 256 contiguous bytes, four zmm; zmm m holds rows m, m + 4,
    // m + 8 and m + 12, one per 128-bit lane, which is the order of VPSHUFB's lookups in the AVX-512
    // decode.
    std::vector<int8_t> tables;
    std::vector<float> scale;  // s_w, [group][padded_rows] (zero past the last row)
    std::vector<int32_t> sum;  // V, [group][padded_rows]
    const int8_t* block_tables(int64_t rb, int64_t g) const { return tables.data() + (rb * groups + g) * 256; }
    static int64_t table_offset(int64_t row_in_block) { return (row_in_block % 4) * 64 + (row_in_block / 4) * 16; }
    int8_t* table(int64_t r, int64_t g) { return tables.data() + (r / 16 * groups + g) * 256 + table_offset(r % 16); }
    const int8_t* table(int64_t r, int64_t g) const { return block_tables(r / 16, g) + table_offset(r % 16); }
    const float* group_scale(int64_t g) const { return scale.data() + g * padded_rows; }
    const int32_t* group_sum(int64_t g) const { return sum.data() + g * padded_rows; }
    int64_t nbytes() const {
        return int64_t(tables.size() + scale.size() * sizeof(float) + sum.size() * sizeof(int32_t));
    }
    bool built_for(const LutInt8Weight& w) const {
        return rows == w.rows && cols == w.cols && groups == w.groups && q == w.q;
    }
};

bool int8_tiles_supported(const LutInt8Weight& w);

// The int8 values and scales per row and group of the weight whose bits `w` holds.
void build_int8_tile_values(const LutInt8Weight& w, Int8TileValues& out);

// Rows [r0, r0 + 64) of the weight as int8 in VPDPBUSD's order into `tile` (kTileRows * kpad bytes,
// kpad = col_blocks * 32; rows past the end and pruned weights are 0).
void decode_int8_tile_scalar(const LutInt8Weight& w, const Int8TileValues& v, int64_t r0, int8_t* tile);
// out[b * rows + r] for the tile's rows and batch lanes [0, batch): xq is (batch, kpad) bytes and
// x_scale (batch, groups).
void int8_tile_product_scalar(const LutInt8Weight& w, const Int8TileValues& v, int64_t r0, const int8_t* tile,
                              const uint8_t* xq, const float* x_scale, int64_t batch, float* out);
// One row of x (cols floats) to unsigned bytes around 128, per scale group of group_cols columns:
// xq[c] = clamp(lrint(x[c] * 127 / peak), -127, 127) + 128 with peak = max |x| over the group (NaN
// ignored), scale[g] = peak / 127. Bytes past cols are left as they are (the caller fills them with 128).
void quantize_int8_row_scalar(const float* x, int64_t cols, int64_t group_cols, uint8_t* xq, float* scale);
#ifdef SPARSECODEC_HAS_AVX512
void quantize_int8_row_avx512(const float* x, int64_t cols, int64_t group_cols, uint8_t* xq, float* scale);
void decode_int8_tile_avx512(const LutInt8Weight& w, const Int8TileValues& v, int64_t r0, int8_t* tile);
void int8_tile_product_avx512(const LutInt8Weight& w, const Int8TileValues& v, int64_t r0, const int8_t* tile,
                              const uint8_t* xq, const float* x_scale, int64_t batch, float* out);
#endif

// out (batch, rows) = x @ W^T through int8 tiles, on the active SIMD level's kernels.
void int8_tiles_matmul(const LutInt8Weight& w, const Int8TileValues& v, const float* x, int64_t batch, float* out);

}  // namespace sc
