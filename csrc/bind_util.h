// Shared by the pybind11 files (bind_*.cpp): argument checks that turn numpy arrays and parameters
// into the kernels' views, the native Weight object, and the register_* functions that bindings.cpp
// calls to build the module. The wrappers check types and shapes, release the GIL around the work,
// and throw std::invalid_argument (ValueError, see bindings.cpp) or py::type_error (TypeError).
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "matmul_tile.h"
#include "plane_codec.h"
#include "xor_network.h"

namespace sc {
namespace bindings {

namespace py = pybind11;

// One per concern; each adds its functions and classes to the module.
void register_runtime(py::module_& m);   // bind_runtime.cpp: build_info, SIMD level, threads
void register_codec(py::module_& m);     // bind_codec.cpp: networks, plane coding, care maps, Rice, trellis
void register_weight(py::module_& m);    // bind_weight.cpp: Weight, decoding, dequantize, matmul and its plans
void register_lowrank(py::module_& m);   // bind_lowrank.cpp: lowrank_decode
void register_spectral(py::module_& m);  // bind_spectral.cpp: spectral_product

// Whether numpy dtype `a` is `b`: the same kind and size in native byte order. Not object identity:
// numpy has two names for some types (uint64 is both ulong and ulonglong on Linux) and an unpickled
// array may carry either.
inline bool same_dtype(const py::dtype& a, const py::dtype& b) {
    return a.is(b) || (a.kind() == b.kind() && a.itemsize() == b.itemsize() && a.attr("isnative").cast<bool>());
}

// Accepts only a C-contiguous numpy array of exactly dtype T and the given ndim (no silent casts).
template <class T>
py::array_t<T> require_array(const py::handle& obj, const char* name, int ndim) {
    if (!py::isinstance<py::array>(obj)) throw py::type_error(std::string(name) + " must be a numpy array");
    py::array arr = py::reinterpret_borrow<py::array>(obj);
    if (!same_dtype(arr.dtype(), py::dtype::of<T>()))
        throw py::type_error(std::string(name) + " must have dtype " + std::string(py::str(py::dtype::of<T>())) +
                             ", got " + std::string(py::str(arr.dtype())));
    if (arr.ndim() != ndim)
        throw std::invalid_argument(std::string(name) + " must be " + std::to_string(ndim) + "-D, got " +
                                    std::to_string(arr.ndim()) + "-D");
    if (!(arr.flags() & py::array::c_style)) throw std::invalid_argument(std::string(name) + " must be C-contiguous");
    if (reinterpret_cast<uintptr_t>(arr.data()) % alignof(T) != 0)
        throw std::invalid_argument(std::string(name) + " must be aligned to its element size");
    return py::array_t<T>(arr);
}

inline void require_len(const py::array& a, int axis, int64_t want, const char* name) {
    if (a.shape(axis) != want)
        throw std::invalid_argument(std::string(name) + ": axis " + std::to_string(axis) + " has length " +
                                    std::to_string(a.shape(axis)) + ", expected " + std::to_string(want));
}

// Views of the Python arrays of patch positions, which they keep alive (see patch_list.h for why a
// view is safe while the GIL is released).
struct PatchLists {
    std::vector<py::array> arrays;
    std::vector<PatchList> lists;
};

// One array of strictly ascending positions in [0, length) per plane (q of them): uint32 (planes of
// at most 2^32 bits) or int64.
PatchLists require_patches(const py::list& patches, int q, int64_t length);

// The plane geometry of a network for a plane of `length` bits, checked; layout: "linear" or "scatter".
PlaneGeometry geometry(const XorNetwork& net, int64_t length, int64_t chain, const std::string& layout,
                       int group_bands);

// rows * cols, checked to be a supported plane length.
int64_t matrix_size(int64_t rows, int64_t cols);

// The scale layout of a (rows, cols) weight with q planes: scales (rows, groups, q), checked.
ScaleLayout scale_layout(const py::array_t<float>& scales, int64_t rows, int64_t cols, int64_t group_size, int q);

// Per-group offsets (rows, groups) of a weight, or None: checked against its scale layout. The array
// is kept in `keep`; returns its data, or null for None.
const float* offsets_of(const py::object& obj, const ScaleLayout& layout, int64_t rows, py::array_t<float>& keep);

// A bitmap (flat keep bits) or a low-rank mask: ("bitmap", words) or ("lowrank", left, right, tile_rows,
// tile_cols, rank), checked against the matrix shape.
struct MaskArrays {
    py::array_t<uint64_t> bitmap, left, right;
    MaskSource source;
};

MaskArrays require_mask(const py::tuple& spec, int64_t rows, int64_t cols);

// An encoded weight as the kernels see it: built once from its arrays and parameters, checked, and
// kept (Python caches it beside the EncodedWeight). Owns the network and holds the arrays it points
// into, patch positions included (read in place: see patch_list.h for why that is safe).
struct NativeWeight {
    std::unique_ptr<XorNetwork> net;
    py::array_t<uint64_t> code;
    py::array_t<float> scales, offsets;
    PatchLists patches;
    MaskArrays mask;
    MatmulWeight weight;
};

std::unique_ptr<NativeWeight> make_weight(py::object code_obj, py::list patches_obj, py::tuple mask_spec, int64_t rows,
                                          int64_t cols, py::object scales_obj, py::object offsets_obj,
                                          int64_t group_size, int n_in, int n_out, int depth, uint64_t seed,
                                          int64_t chain, const std::string& layout_name, int group_bands);

}  // namespace bindings
}  // namespace sc
