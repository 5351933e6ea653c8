// Fused decode of an encoded weight matrix to dense float32: XOR-decode the planes of a block of
// slices into cache-sized bit buffers, apply that block's patches, then dequantise with the mask.
#pragma once

#include <cstdint>
#include <vector>

#include "dequant.h"
#include "patch_list.h"
#include "plane_codec.h"

namespace sc {

void decode_dense(const XorNetwork& net, const PlaneGeometry& geo, const uint64_t* code, int q,
                  const std::vector<PatchList>& patches, const uint64_t* mask, const ScaleLayout& layout, float* out);

}  // namespace sc
