// The int8-table lookup kernel ("lut_int8"), T-MAC's idea with the keep-mask folded in.
//
// Per batch lane, x is cut into groups of 4 columns; each has a 16-entry table of its subset sums
// (T[n] = sum of x[4c + i] over the bits i of n), rounded to int8 with one scale per lane and scale
// group of the weight: s = max over the group's tables of max |T| / 127, entries lrint(T / s). With
// the keep-mask m and each sign plane u_p, sum_j m_j w_j x_j = sum_p alpha_p (2 S[m & u_p] - S[m]) +
// beta S[m] (dequant.h's value model), each S a sum of table entries: exact integers, accumulated in
// int32. At the end of each scale group, per row:
//   y = y + ((float(2 acc_p - acc_m) * s) * alpha_p)   for p ascending, then, with offsets only,
//   y = y + ((float(acc_m) * s) * beta),
// in exactly this order on every SIMD level, so the AVX-512 kernel equals the scalar one bit for bit.
// The only difference from the exact product is the rounding of the tables: each table entry is off
// by at most s / 2, so |y - y_exact| <= sum over groups and planes of (3 s / 2) * |alpha_p| * (columns
// / 4) plus (s / 2) |beta| (columns / 4) (documented in sparsecodec.matmul).
//
// The weight is kept in the kernel's order (LutInt8Weight): per block of 16 rows and 32 columns, the
// mask (left out when every weight is kept) then each plane as 16 little-endian 32-bit words, word
// i = row 16 rb + i, bit t = column 32 cb + t; byte k of a word holds column groups 2k (low nibble)
// and 2k + 1 (high nibble). A row block's scale groups follow each other, each its blocks and then
// its scales, so that the kernels read one stream in memory order (at batch 1, a layer read from
// memory got about 30 % faster in an experiment that skipped reading the scales as a separate
// stream). The scales are alpha_0 .. alpha_{q-1}, 16 each, held as float16 when every alpha of the
// weight is a float16 value (float16 scales in the stream) and else as float32, then, only with
// offsets, beta's 16 as float32 (GPTQ's beta = s ((2^q - 1) / 2 - z) is rarely a float16 value),
// padded to whole 64-byte lines, so that every block starts a cache line. At q = 4 and 128-column
// groups the scales of a masked group are a fifth of its bytes as float32, an eighth with float16
// alphas and a float32 beta, a tenth with float16 alphas alone. A lane's tables per 32-column block
// are 128 bytes: 64 bytes holding the tables of column groups 0, 2, 4, 6 (16 bytes each), then
// 64 holding groups 1, 3, 5, 7, which is the order the AVX-512 kernel's VPERMB lookups index. Rows
// and columns past the weight's end are padded with cleared bits (mask and planes); where every
// weight is kept and the blocks hold no mask, the columns past the end need nothing in the table
// kernel (their table entries add 0) and the int8-tile decode zeroes them.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <vector>

#include "aligned_vector.h"
#include "float_bits.h"
#include "matmul_tile.h"

namespace sc {

constexpr int64_t kLut8Rows = 16;     // rows per block (the 16 words of a zmm)
constexpr int64_t kLut8Cols = 32;     // columns per block (the bits of a word)
constexpr int64_t kLut8TableBytes = 128;  // a lane's tables for one column block

// Symmetric int8 rounding, shared by the int8 kernels: values of peak magnitude `peak` get the step
// peak / 127 and round as clamp_int8(lrint(v * int8_inverse(peak))).
inline float int8_inverse(float peak) { return peak > 0.0f ? 127.0f / peak : 0.0f; }
inline int8_t clamp_int8(long v) { return int8_t(std::max(-127L, std::min(127L, v))); }

struct LutInt8Weight {
    int64_t rows = 0, cols = 0;
    int q = 1;
    int64_t row_blocks = 0, col_blocks = 0;
    int64_t groups = 1;            // scale groups per row
    int64_t group_blocks = 1;      // column blocks per scale group
    bool offsets = false;
    // every weight kept: S[m] is then the all-ones entry of each table, the AVX-512 kernel skips the
    // mask's lookups (the scalar one looks up the all-ones mask, to the same integers), and the blocks
    // leave the mask's words out (a sixth of the bytes at q = 4)
    bool all_kept = false;
    // every alpha a float16 value: the groups' alphas are held as float16 bits, two to a word
    bool half_scales = false;
    // [row_block][group]: the group's blocks, [block][mask_planes() + q][16] words (the mask unless
    // all_kept, then planes 0 .. q-1), then its scales: [q][16] alphas (float16 or float32) and, with
    // offsets, [16] betas (float32), held as their bits, padded to whole 16-word lines
    AlignedVector<uint32_t> words;

    int mask_planes() const { return all_kept ? 0 : 1; }
    int64_t block_words() const { return (mask_planes() + q) * kLut8Rows; }
    // the 16 words of plane p in a block (after the mask's, if the blocks hold a mask)
    static const uint32_t* plane_words(const uint32_t* block, int mask_planes, int p) { return block + (mask_planes + p) * kLut8Rows; }
    int scale_rows() const { return q + (offsets ? 1 : 0); }
    // the words of a group's alphas (beta's row follows them)
    int64_t alpha_words() const { return q * (half_scales ? kLut8Rows / 2 : kLut8Rows); }
    int64_t scale_words() const {
        const int64_t used = alpha_words() + (offsets ? kLut8Rows : 0);
        return (used + kLut8Rows - 1) / kLut8Rows * kLut8Rows;
    }
    // the column blocks of group g (the last group may have fewer)
    int64_t group_block_count(int64_t g) const { return std::min(col_blocks, (g + 1) * group_blocks) - g * group_blocks; }
    int64_t row_block_words() const { return col_blocks * block_words() + groups * scale_words(); }
    // the first block of group g in row block rb; its blocks follow each other, then its scales
    int64_t group_offset(int64_t rb, int64_t g) const {
        return rb * row_block_words() + g * (group_blocks * block_words() + scale_words());
    }
    const uint32_t* group_start(int64_t rb, int64_t g) const { return words.data() + group_offset(rb, g); }
    uint32_t* group_start(int64_t rb, int64_t g) { return words.data() + group_offset(rb, g); }
    const uint32_t* block(int64_t rb, int64_t cb) const {
        const int64_t g = cb / group_blocks;
        return group_start(rb, g) + (cb - g * group_blocks) * block_words();
    }
    // the scales of row block rb and group g: value p * 16 + i (a word, or a half-word with
    // half_scales) holds alpha_p of row i, and word alpha_words() + i beta of row i
    int64_t scales_offset(int64_t rb, int64_t g) const { return group_offset(rb, g) + group_block_count(g) * block_words(); }
    const uint32_t* group_scales(int64_t rb, int64_t g) const { return words.data() + scales_offset(rb, g); }
    // plane p's scale of row 16 rb + i in group g; p = q: beta, 0 without offsets
    float scale(int64_t rb, int64_t g, int p, int64_t i) const {
        if (p >= scale_rows()) return 0.0f;
        const uint32_t* s = group_scales(rb, g);
        if (p == q) return float_of_bits(s[alpha_words() + i]);
        if (!half_scales) return float_of_bits(s[p * kLut8Rows + i]);
        uint16_t h;
        std::memcpy(&h, reinterpret_cast<const char*>(s) + half_byte(p, i), sizeof h);
        return float_of_half(h);
    }
    // stores it (p < scale_rows(); with half_scales, alphas must be float16 values)
    void set_scale(int64_t rb, int64_t g, int p, int64_t i, float v) {
        uint32_t* s = words.data() + scales_offset(rb, g);
        uint16_t h = 0;
        if (p == q) {
            s[alpha_words() + i] = bits_of_float(v);
        } else if (!half_scales) {
            s[p * kLut8Rows + i] = bits_of_float(v);
        } else {
            if (!half_of_float(v, h)) throw std::logic_error("a scale that is not a float16 value in a float16 layout");
            std::memcpy(reinterpret_cast<char*>(s) + half_byte(p, i), &h, sizeof h);
        }
    }
    // the byte of row i's float16 alpha_p in a group's scales
    static int64_t half_byte(int p, int64_t i) { return 2 * (p * kLut8Rows + i); }
    int64_t nbytes() const { return int64_t(words.size() * sizeof(uint32_t)); }
};

// A batch's int8 tables: [lane][col_block][128] entries and [lane][group] scales.
struct Int8Tables {
    int64_t batch = 0, col_blocks = 0, groups = 0;
    std::vector<int8_t> entries;
    std::vector<float> scale;
    std::vector<int32_t> full;  // [lane][group]: the sum of the all-ones entries (S of a full mask)
    const int8_t* lane(int64_t b) const { return entries.data() + b * col_blocks * kLut8TableBytes; }
    const float* lane_scales(int64_t b) const { return scale.data() + b * groups; }
    int32_t full_sum(int64_t b, int64_t g) const { return full[size_t(b * groups + g)]; }
};

// Whether the weight's scale groups fit the kernel's 32-column blocks (whole rows or multiples of 32).
bool lut_int8_supported(const MatmulWeight& w);

// The weight in the kernel's order, decoded from the compressed planes (in parallel).
void build_lut_int8_weight(const MatmulWeight& w, LutInt8Weight& out);

struct Kernels;

// x (batch, cols) row-major into its int8 tables, a lane at a time on the kernel table k's lane kernel
// (the caller's, so that one call's kernels all come from one SIMD level).
void build_int8_tables(const Kernels& k, const LutInt8Weight& w, const float* x, int64_t batch, Int8Tables& out);
// One lane's tables (col_blocks * 128 entries), scales and full-mask sums (groups each) from its row
// of x. Entry n of a 4-column group's subset sums is low[n & 3] + high[n >> 2], the sums of its first
// and its last two columns {0, x0, x1, x0 + x1} and {0, x2, x3, x2 + x3} (one float add per entry).
void int8_tables_lane_scalar(const LutInt8Weight& w, const float* x, int8_t* lane, float* scale, int32_t* full);

// out[b * rows + r] for batch lanes [b0, b1) and the rows of row blocks [rb0, rb1).
void lut_int8_rows_scalar(const LutInt8Weight& w, const Int8Tables& t, int64_t b0, int64_t b1, int64_t rb0,
                          int64_t rb1, float* out);
#ifdef SPARSECODEC_HAS_AVX512
void lut_int8_rows_avx512(const LutInt8Weight& w, const Int8Tables& t, int64_t b0, int64_t b1, int64_t rb0,
                          int64_t rb1, float* out);
void int8_tables_lane_avx512(const LutInt8Weight& w, const float* x, int8_t* lane, float* scale, int32_t* full);
#endif
// Batch lanes the AVX-512 kernel runs at once on each block's indices, chosen by measurement. A pass
// keeps lanes x (q + 1) accumulators and 2 (q + 1) indices live, with the vector of ones, the two
// index constants, a lane's two tables and a looked-up vector, in 32 zmm registers: at these widths
// the masked kernels spill a few accumulators per block (q = 2: three, q = 4: five) and were still
// faster, because fewer passes repeat each block's index work. At S = 0.5 and batch 8 they measured
// 7 % (q = 2, 4096 x 4096), 11 % (q = 3, 2048 x 2048) and 12-14 % (q = 4, 4096 x 4096) faster than
// the earlier 4, 3 and 2 lanes, and 27-28 % faster at q = 5 and 6 (2048 x 2048) than one lane;
// eight lanes also beat six at q = 1 by 7 %.
constexpr int lut_int8_lanes(int q) { return q <= 2 ? 8 : q == 3 ? 5 : q == 4 ? 4 : q <= 6 ? 2 : 1; }

// out (batch, rows) = x @ W^T with int8 tables, on the active SIMD level's kernel.
void lut_int8_matmul(const LutInt8Weight& w, const float* x, int64_t batch, float* out);

}  // namespace sc
