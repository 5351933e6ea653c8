// The two compressed-matmul kernels, as scalar references and AVX2 variants that match them bit for
// bit in every batch lane.
//
// Both compute out[b][r] = sum_k W[r][k] x[b][k] for rows r, where W is the dequantised, masked
// weight, without forming W:
//
// * lut (BiQGEMM / LUT-GEMM), on decoded bit rows (BitRows: a decoded tile, or rows of the cached
//   DecodedBits): per scale group and 8-column chunk c, a table of all subset sums of
//   x[b][8c .. 8c+7] (T[0] = 0, T[k | 2^i] = T[k] + x[8c + i]); with mask byte m and plane byte u,
//   sum_j m_j b_j x_j = 2 T[m & u] - T[m]. Per group: accK += T[m], accP[p] += T[m & u_p] over its
//   chunks in order, then y += ((2 accP[p]) - accK) * alpha[p] for p ascending, and with an offset
//   y += accK * beta (accK = the sum of x over the kept columns). Needs scale groups
//   that are whole rows or multiples of 8 columns. The AVX2 path keeps the accumulators in registers:
//   batch 1, four rows at a time over tables of x built once per call; batches, up to 48 lanes at a
//   time over panels of tables whose entries are vectors of lanes.
// * sparse: over the kept weights only, read from the weight's sparse form (SparsePlan), never
//   touching a pruned position; C[code] is the dequantised value of a bit pattern (dequant_one's
//   formula). Batch 1: eight partial sums over the j-th kept weight of each group, for q = 1
//   s[j % 8] += (bit ? x : -x), then y += sparse_lanes_sum(s) * alpha; for q >= 2 (or offsets)
//   s[j % 8] = fma(C[code], x, s[j % 8]), then y += sparse_lanes_sum(s) (the AVX2 path gathers
//   eight kept weights per vector). Batch > 1, per batch lane and group, sparse_sets(nb) partial sums
//   (nb: vector blocks in the lane's chunk of up to 12): s[j % sets] = fma(C[code], x, s[j % sets])
//   over the group's kept weights j in order, then y += sparse_sets_sum(s); the AVX2 path runs across
//   up to 96 lanes at once.
//
// Operations are written out (no contraction: the library builds with -ffp-contract=off; fma only
// where stated), so every path produces the same float32 results.
#pragma once

#include <cmath>
#include <cstdint>
#include <vector>

#include "matmul_tile.h"

namespace sc {

// The weight in sparse form, built once from the decoded planes and mask (build_sparse_plan) and
// kept as a run-time cache beside the compressed weight. Segment s = row * groups + group holds
// entries [seg[s], seg[s + 1]) in ascending column order. Packed (cols << q <= 65536): entry =
// (col << q) | code, 16 bits per kept weight; otherwise entry = col and codes[k] = code (24 bits).
// code = the kept weight's bit pattern, bit p from plane p.
struct SparsePlan {
    const int64_t* seg = nullptr;
    const uint16_t* entries = nullptr;
    const uint8_t* codes = nullptr;  // null when packed
    int q = 1;
    int64_t column(int64_t k) const { return codes ? entries[k] : entries[k] >> q; }
    int code(int64_t k) const { return codes ? codes[k] : entries[k] & ((1 << q) - 1); }
};

// Whether a weight of `cols` columns and q planes packs column and code into 16 bits.
inline bool sparse_packed(int64_t cols, int q) { return (cols << q) <= 65536; }

// Per-call inputs shared by all tiles. The driver prepares the forms of x the chosen kernel reads.
constexpr int kLanes = 8;                 // batch elements per vector
constexpr int kChunkBlocks = 12;          // sparse kernel: vectors of lanes in registers at once
constexpr int kChunkLanes = kChunkBlocks * kLanes;

struct MatmulInput {
    const float* x = nullptr;  // (batch, cols) row-major
    int64_t batch = 0;
    float* out = nullptr;      // (batch, rows) row-major
    const float* x_signed = nullptr;  // sparse, batch 1, q = 1: (-x[c], +x[c]) at 2c, 2c + 1, then 0
    const float* tables = nullptr;    // lut, batch 1: subset-sum tables of x per 8 columns, [chunk][256]
    const float* xt = nullptr;        // lut, batch > 1: [block][cols][kLanes], lanes zero-padded
    const float* x_cols = nullptr;    // sparse, batch > 1: per chunk of kChunkLanes lanes, [cols][lanes]
    int64_t blocks = 0;               // ceil(batch / kLanes)
    int64_t padded = 0;               // blocks * kLanes
};

bool lut_supported(const MatmulWeight& w);

// The lut kernel on decoded bit rows, for the batch lanes of vector blocks [block0, block1) (batch 1:
// the one block [0, 1)); writes out[b][r] for those lanes and rows.
void lut_rows_scalar(const MatmulWeight& w, const BitRows& rows, const MatmulInput& in, int64_t block0, int64_t block1,
                     std::vector<float>& scratch);
// Vector blocks of lanes the AVX2 lut kernel keeps in registers at once for q planes (a task of the
// driver covers a multiple of this; the scalar kernel takes one block at a time).
inline int lut_register_blocks(int q) { return q == 1 ? 6 : q == 2 ? 4 : q == 3 ? 3 : q == 4 ? 2 : 1; }
// Rows [r0, r1) of out from the sparse form (no tile decode: the plan holds the decoded bits).
void sparse_rows_scalar(const MatmulWeight& w, const SparsePlan& plan, int64_t r0, int64_t r1, const MatmulInput& in);
#ifdef SPARSECODEC_HAS_AVX2
void lut_rows_avx2(const MatmulWeight& w, const BitRows& rows, const MatmulInput& in, int64_t block0, int64_t block1,
                   std::vector<float>& scratch);
void sparse_rows_avx2(const MatmulWeight& w, const SparsePlan& plan, int64_t r0, int64_t r1, const MatmulInput& in);
#endif

// The dequantised value of every bit pattern of one scale group (2^q entries, dequant_one's formula;
// beta: the group's offset or null).
inline void pattern_values(const float* alpha, const float* beta, int q, float* values) {
    for (int c = 0; c < (1 << q); ++c) {
        float acc = (c & 1) ? alpha[0] : -alpha[0];
        for (int i = 1; i < q; ++i) acc = acc + (((c >> i) & 1) ? alpha[i] : -alpha[i]);
        if (beta) acc = acc + *beta;
        values[c] = acc;
    }
}

// Whether the batch-1 sparse kernel takes its signed-sum path (one bit, no offsets: every kept
// weight is +-alpha, so the scale multiplies the segment's signed sum once).
inline bool sparse_signed_path(const MatmulWeight& w) { return w.q() == 1 && !w.scales.offsets; }

// Batch 1, end of scale group g of the lut kernel: y[r] += ((2 accP[p]) - accK) * alpha[p], p ascending;
// then, with offsets, y[r] += accK * beta (accK is the sum of x over the group's kept columns).
inline void lut_close_group(const MatmulWeight& w, const BitRows& rows, int64_t g, const float* acc_k,
                            const float* acc_p, float* y) {
    const int q = w.q();
    for (int64_t r = 0; r < rows.r1 - rows.r0; ++r) {
        const float* alpha = w.scales.alpha(rows.r0 + r, g);
        for (int p = 0; p < q; ++p) {
            float t = 2.0f * acc_p[r * q + p];
            t = t - acc_k[r];
            t = t * alpha[p];
            y[r] = y[r] + t;
        }
        if (const float* beta = w.scales.beta(rows.r0 + r, g)) y[r] = y[r] + acc_k[r] * *beta;
    }
}

// Batches: partial sums per lane and group for a chunk of nb vector blocks of lanes (at most 12
// vectors of accumulators in registers): the j-th kept weight of a group goes to sum j % sets, so
// that consecutive fmas do not wait on each other when a chunk has few lanes.
constexpr int sparse_sets(int64_t nb) { return nb <= 3 ? 4 : nb <= 6 ? 2 : 1; }

// Those partial sums combined, in this order: (s0 + s1) + (s2 + s3), s0 + s1, or s0.
inline float sparse_sets_sum(const float* s, int sets) {
    return sets == 4 ? (s[0] + s[1]) + (s[2] + s[3]) : sets == 2 ? s[0] + s[1] : s[0];
}

// The batch-1 sparse kernel's eight partial sums, summed in the order of the AVX2 horizontal sum.
inline float sparse_lanes_sum(const float* s) {
    const float h0 = s[0] + s[4], h1 = s[1] + s[5], h2 = s[2] + s[6], h3 = s[3] + s[7];
    return (h0 + h2) + (h1 + h3);
}

// Batch 1, q = 1: one segment's signed sum (before the scale). The packed entry 2 * col + bit indexes
// the signed copy of x, so a kept weight costs two loads and an add; shared by both kernels.
inline float sparse_signed_sum(const uint16_t* e, int64_t k0, int64_t k1, const float* x_signed) {
    float s[8] = {0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f};
    int64_t k = k0;
    for (; k + 8 <= k1; k += 8)
        for (int i = 0; i < 8; ++i) s[i] = s[i] + x_signed[e[k + i]];
    if (k < k1)  // a last, partial step: +0 in the lanes past the segment
        for (int i = 0; i < 8; ++i) s[i] = s[i] + (k + i < k1 ? x_signed[e[k + i]] : 0.0f);
    return sparse_lanes_sum(s);
}

// Subset-sum table of x[0 .. width) (width <= 8): table[0] = 0, table[k | 2^i] = table[k] + x[i];
// entries past 2^width are left alone.
inline void subset_sums(const float* x, int width, float* table) {
    table[0] = 0.0f;
    for (int i = 0; i < width; ++i) {
        // entries [2^i, 2^(i+1)) from [0, 2^i): disjoint runs, which the compiler vectorises
        const float xi = x[i];
        const float* __restrict__ low = table;
        float* __restrict__ high = table + (1 << i);
        for (int k = 0; k < (1 << i); ++k) high[k] = low[k] + xi;
    }
}

// Columns [c_begin, c_end) of scale group g (clipped to the row).
inline void group_columns(const ScaleLayout& s, int64_t g, int64_t& c_begin, int64_t& c_end) {
    c_begin = g * s.group_size;
    c_end = c_begin + s.group_size < s.cols ? c_begin + s.group_size : s.cols;
}

}  // namespace sc
