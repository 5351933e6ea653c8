// The kernels that exist per SIMD level, as one table of function pointers per level.
//
// Every entry of the scalar table is the portable reference; the AVX2 table (only when the AVX2
// translation units are compiled in) holds the AVX2/BMI2 twins, which give bit-identical results, and
// the AVX-512 table the AVX-512 twins, with the AVX2 entries where a kernel has no AVX-512 twin (yet).
// kernels() returns the table of the level active now (cpu_dispatch.h), so set_simd_level switches
// every kernel below at run time. The dispatching entry points (decode_slices, dequant_range,
// lowrank_row, the matmul and spectral-product drivers, ...) read the table; nothing else tests the
// level. The trellis encoder still chooses its BMI2/AVX2 paths itself (see trellis_encoder.cpp).
#pragma once

#include <cstdint>
#include <vector>

#include "cpu_dispatch.h"

namespace sc {

struct XorNetwork;
struct PlaneGeometry;
struct ScaleLayout;
struct LowRankGeometry;
struct MatmulWeight;
struct BitRows;
struct MatmulInput;
struct SparsePlan;
struct SpectralProductShape;
struct LutInt8Weight;
struct Int8Tables;
struct Int8TileValues;
template <class T>
struct SpectralView;

struct Kernels {
    SimdLevel level;

    // plane_codec.h: slices [s0, s1) of one plane (decode_slices).
    void (*decode_slices)(const XorNetwork& net, const PlaneGeometry& geo, const uint64_t* code, int64_t s0,
                          int64_t s1, uint64_t* out);
    // plane_codec.h: decode_band's transposed inputs for a full band, or false when this level has no
    // shortcut for the network (x untouched; the caller transposes the windows).
    bool (*band_inputs)(const XorNetwork& net, const PlaneGeometry& geo, const uint64_t* code, int64_t t0,
                        uint64_t* x);
    // plane_codec.h: decode_band's outputs from its transposed inputs.
    void (*band_outputs)(const uint64_t* x, const XorNetwork& net, uint64_t* out);
    // plane_codec.h: decode_band's outputs for a full band straight from the code, or false when this
    // level has no such kernel for the network (then band_inputs and band_outputs run).
    bool (*band_direct)(const XorNetwork& net, const PlaneGeometry& geo, const uint64_t* code, int64_t t0,
                        uint64_t* out);

    // dequant.h: dequant_range (the scalar kernel ignores `nontemporal`).
    void (*dequant_range)(const ScaleLayout& layout, const uint64_t* const* planes, const uint64_t* mask, int64_t p0,
                          int64_t count, float* out, bool nontemporal);

    // lowrank_mask.h: one mask row of a low-rank index.
    void (*lowrank_row)(const LowRankGeometry& geo, const uint64_t* left, const uint64_t* right, int64_t i,
                        uint64_t* row_out);

    // matmul_kernels.h: the lut kernel on decoded bit rows, and the vector blocks of lanes it holds in
    // registers at once for q planes (a batched task covers a multiple of this).
    void (*lut_rows)(const MatmulWeight& w, const BitRows& rows, const MatmulInput& in, int64_t block0,
                     int64_t block1, std::vector<float>& scratch);
    int (*lut_blocks)(int q);
    // matmul_kernels.h: the sparse kernel on rows [r0, r1).
    void (*sparse_rows)(const MatmulWeight& w, const SparsePlan& plan, int64_t r0, int64_t r1,
                        const MatmulInput& in);

    // lut_int8.h: the int8-table kernel on batch lanes [b0, b1) and row blocks [rb0, rb1).
    void (*lut_int8_rows)(const LutInt8Weight& w, const Int8Tables& t, int64_t b0, int64_t b1, int64_t rb0,
                          int64_t rb1, float* out);
    // lut_int8.h: one batch lane's int8 tables.
    void (*int8_tables_lane)(const LutInt8Weight& w, const float* x, int8_t* lane, float* scale, int32_t* full);

    // int8_tiles.h: a 64-row tile decoded to int8 in VPDPBUSD's order, and its product with the batch.
    void (*decode_int8_tile)(const LutInt8Weight& w, const Int8TileValues& v, int64_t r0, int8_t* tile);
    void (*int8_tile_product)(const LutInt8Weight& w, const Int8TileValues& v, int64_t r0, const int8_t* tile,
                              const uint8_t* xq, const float* x_scale, int64_t batch, float* out);
    // one row of x to int8 bytes per scale group (int8_tiles' activations)
    void (*quantize_int8_row)(const float* x, int64_t cols, int64_t group_cols, uint8_t* xq, float* scale);

    // spectral_product.h: group g, bins [m0, m1) of the spectral product.
    void (*spectral_product_block)(const SpectralProductShape& shape, const SpectralView<const float>& a,
                                   const SpectralView<const float>& b, bool conj_b, const SpectralView<float>& out,
                                   int64_t g, int64_t m0, int64_t m1);
};

// The table of a level (the scalar one for a level not compiled in).
const Kernels& kernels_for(SimdLevel level);

// The table of the active level. Read it once per call when a call runs several kernels, so that they
// all come from the same level.
inline const Kernels& kernels() { return kernels_for(active_simd_level()); }

}  // namespace sc
