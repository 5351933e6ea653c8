// Decoding a low-rank binary index: the keep-mask is, tile by tile, the Boolean product of two small
// binary factors, M[i, j] = OR_r left[i, r] AND right[r, j].
//
// The matrix (rows x cols) is cut into tiles of tile_rows x tile_cols (the last row/column of tiles
// may be smaller). Tile (a, b) has its own factors of rank k <= 64:
//   left  (tile column block b, row i): k bits, one uint64 word per (b, i)      -> left[b * rows + i]
//   right (tile row block a, rank r):   a full-width row of cols bits           -> right + (a * k + r) * row_words
// where tile (a, b) uses only the columns of block b of its right rows. Row i of the mask is, per
// column block, the word-parallel OR of the right rows selected by left[b, i].
#pragma once

#include <cstdint>

namespace sc {

struct LowRankGeometry {
    int64_t rows, cols, tile_rows, tile_cols;
    int rank;
    int64_t row_blocks() const { return (rows + tile_rows - 1) / tile_rows; }
    int64_t col_blocks() const { return (cols + tile_cols - 1) / tile_cols; }
    int64_t row_words() const { return (cols + 63) / 64; }
};

// Throws std::invalid_argument for an unsupported geometry.
void check_lowrank_geometry(const LowRankGeometry& geo);

// Writes the flat row-major keep-mask (rows * cols bits, little-endian words) to out, which must
// hold ceil(rows * cols / 64) words. Multi-threaded over groups of 64 rows.
void lowrank_decode(const LowRankGeometry& geo, const uint64_t* left, const uint64_t* right, uint64_t* out);

// One mask row (cols bits starting at bit 0 of row_out, row_words words, overwritten).
void lowrank_row_scalar(const LowRankGeometry& geo, const uint64_t* left, const uint64_t* right, int64_t i,
                        uint64_t* row_out);
#ifdef SPARSECODEC_HAS_AVX2
void lowrank_row_avx2(const LowRankGeometry& geo, const uint64_t* left, const uint64_t* right, int64_t i,
                      uint64_t* row_out);
#endif

}  // namespace sc
