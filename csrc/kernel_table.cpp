#include "kernel_table.h"

#include "dequant.h"
#include "int8_tiles.h"
#include "lowrank_mask.h"
#include "lut_int8.h"
#include "matmul_kernels.h"
#include "plane_codec.h"
#include "spectral_product.h"

namespace sc {

namespace {

// Adapters giving the scalar kernels the table's signatures.
void dequant_range_scalar_nt(const ScaleLayout& layout, const uint64_t* const* planes, const uint64_t* mask,
                             int64_t p0, int64_t count, float* out, bool /*nontemporal*/) {
    dequant_range_scalar(layout, planes, mask, p0, count, out);
}

// For band_inputs and band_direct: this level has no shortcut.
bool band_none(const XorNetwork&, const PlaneGeometry&, const uint64_t*, int64_t, uint64_t*) { return false; }

int lut_blocks_one(int) { return 1; }  // the scalar lut kernel takes one block of lanes at a time

constexpr Kernels kScalar = [] {
    Kernels k{};
    k.level = SimdLevel::scalar;
    k.decode_slices = &decode_slices_scalar;
    k.band_inputs = &band_none;
    k.band_outputs = &band_outputs_scalar;
    k.band_direct = &band_none;
    k.dequant_range = &dequant_range_scalar_nt;
    k.lowrank_row = &lowrank_row_scalar;
    k.lut_rows = &lut_rows_scalar;
    k.lut_blocks = &lut_blocks_one;
    k.sparse_rows = &sparse_rows_scalar;
    k.lut_int8_rows = &lut_int8_rows_scalar;
    k.int8_tables_lane = &int8_tables_lane_scalar;
    k.decode_int8_tile = &decode_int8_tile_scalar;
    k.int8_tile_product = &int8_tile_product_scalar;
    k.quantize_int8_row = &quantize_int8_row_scalar;
    k.spectral_product_block = &spectral_product_block_scalar;
    return k;
}();

#ifdef SPARSECODEC_HAS_AVX2
constexpr Kernels kAvx2 = [] {
    Kernels k = kScalar;  // the int8 kernels have no AVX2 twin: their scalar references stay
    k.level = SimdLevel::avx2;
    k.decode_slices = &decode_slices_avx2;
    k.band_inputs = &band_inputs_bmi2;
    k.band_outputs = &band_outputs_avx2;
    k.dequant_range = &dequant_range_avx2;
    k.lowrank_row = &lowrank_row_avx2;
    k.lut_rows = &lut_rows_avx2;
    k.lut_blocks = &lut_register_blocks;
    k.sparse_rows = &sparse_rows_avx2;
    k.spectral_product_block = &spectral_product_block_avx2;
    return k;
}();
#endif

#ifdef SPARSECODEC_HAS_AVX512
constexpr Kernels kAvx512 = [] {
    Kernels k = kAvx2;
    k.level = SimdLevel::avx512;
    k.band_direct = &band_direct_avx512;
    k.decode_slices = &decode_slices_avx512;
    k.lut_int8_rows = &lut_int8_rows_avx512;
    k.int8_tables_lane = &int8_tables_lane_avx512;
    k.decode_int8_tile = &decode_int8_tile_avx512;
    k.int8_tile_product = &int8_tile_product_avx512;
    k.quantize_int8_row = &quantize_int8_row_avx512;
    return k;
}();
#endif

}  // namespace

const Kernels& kernels_for(SimdLevel level) {
#ifdef SPARSECODEC_HAS_AVX512
    if (level == SimdLevel::avx512) return kAvx512;
#endif
#ifdef SPARSECODEC_HAS_AVX2
    if (level == SimdLevel::avx2) return kAvx2;
#else
    (void)level;
#endif
    return kScalar;
}

}  // namespace sc
