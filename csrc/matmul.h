// out = x @ W^T straight from the compressed form (see matmul_kernels.h for the kernels).
#pragma once

#include <cstdint>
#include <vector>

#include "matmul_kernels.h"

namespace sc {

enum class MatmulStrategy : int { lut = 0, sparse = 1 };

// x: (batch, cols) row-major; out: (batch, rows) row-major. The sparse strategy needs `plan`; the lut
// strategy reads `bits` when given (decode_all_bits) and otherwise decodes tile by tile as it goes.
void compressed_matmul(const MatmulWeight& w, MatmulStrategy strategy, const SparsePlan* plan,
                       const DecodedBits* bits, const float* x, int64_t batch, float* out);

// Dequantised rows [r0, r1) into out ((r1 - r0) * cols floats, row-major), decoded tile by tile in
// parallel: the building block of the decoded-tile strategy (a dense GEMM on the tile).
void decode_rows(const MatmulWeight& w, int64_t r0, int64_t r1, float* out);

// Dequantised rows rows[i] (each in [0, w.rows)) into out[i * cols ..]: only the slices (and mask bits)
// of those rows are decoded, one row at a time in parallel: an embedding lookup.
void decode_row_set(const MatmulWeight& w, const int64_t* rows, int64_t n, float* out);

// The weight's sparse form for the sparse kernel (see SparsePlan), decoded tile by tile in parallel.
void build_sparse_plan(const MatmulWeight& w, std::vector<int64_t>& seg, std::vector<uint16_t>& entries,
                       std::vector<uint8_t>& codes);
// Bytes build_sparse_plan's arrays take for w with `kept` kept weights, before building them.
int64_t sparse_plan_nbytes(const MatmulWeight& w, int64_t kept);

// Every row's decoded planes and keep-mask for the lut strategy, decoded tile by tile in parallel.
void decode_all_bits(const MatmulWeight& w, DecodedBits& out);
// Bytes decode_all_bits's DecodedBits take for w (its nbytes once built), before building them.
int64_t decoded_bits_nbytes(const MatmulWeight& w);

}  // namespace sc
