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

// Word w of mask row i restricted to the columns [c0, c1) of one tile column block: the OR of the
// right rows (of tile row block a) selected by `sel`, masked to the block.
inline uint64_t lowrank_block_word(const LowRankGeometry& geo, uint64_t sel, const uint64_t* right, int64_t a,
                                   int64_t w, int64_t c0, int64_t c1) {
    uint64_t acc = 0;
    for (uint64_t s = sel; s; s &= s - 1) acc |= right[(a * geo.rank + __builtin_ctzll(s)) * geo.row_words() + w];
    const int64_t lo = (c0 > w * 64 ? c0 : w * 64) - w * 64, hi = (c1 < w * 64 + 64 ? c1 : w * 64 + 64) - w * 64;
    const uint64_t upto_hi = hi >= 64 ? ~uint64_t(0) : ((uint64_t(1) << hi) - 1);
    const uint64_t below_lo = lo >= 64 ? ~uint64_t(0) : ((uint64_t(1) << lo) - 1);
    return acc & upto_hi & ~below_lo;
}

// Calls fn(sel, a, c0, c1) for every tile column block [c0, c1) in which row i selects any right row
// (sel: its left-factor word; a: its tile row block).
template <class Fn>
inline void for_each_selecting_block(const LowRankGeometry& geo, const uint64_t* left, int64_t i, Fn&& fn) {
    const int64_t a = i / geo.tile_rows;
    for (int64_t b = 0; b < geo.col_blocks(); ++b) {
        const uint64_t sel = left[b * geo.rows + i];
        if (!sel) continue;
        const int64_t c0 = b * geo.tile_cols, c1 = c0 + geo.tile_cols < geo.cols ? c0 + geo.tile_cols : geo.cols;
        fn(sel, a, c0, c1);
    }
}

// One mask row (cols bits starting at bit 0 of row_out, row_words words, overwritten), with the
// best kernel for this CPU.
void lowrank_row(const LowRankGeometry& geo, const uint64_t* left, const uint64_t* right, int64_t i,
                 uint64_t* row_out);

// One mask row (cols bits starting at bit 0 of row_out, row_words words, overwritten).
void lowrank_row_scalar(const LowRankGeometry& geo, const uint64_t* left, const uint64_t* right, int64_t i,
                        uint64_t* row_out);
#ifdef SPARSECODEC_HAS_AVX2
void lowrank_row_avx2(const LowRankGeometry& geo, const uint64_t* left, const uint64_t* right, int64_t i,
                      uint64_t* row_out);
#endif

}  // namespace sc
