// The only pybind11 file: thin wrappers over the kernels. They check types and shapes, release the
// GIL around the work, and turn std::invalid_argument into ValueError.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <algorithm>
#include <cmath>
#include <memory>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

#include "cpu_dispatch.h"
#include "dense_decode.h"
#include "lowrank_mask.h"
#include "matmul.h"
#include "patch_coding.h"
#include "plane_codec.h"
#include "spectral_product.h"
#include "trellis_encoder.h"
#include "xor_network.h"

namespace py = pybind11;
using namespace sc;

#ifndef SPARSECODEC_VERSION
#define SPARSECODEC_VERSION "0.0.0"
#endif
#ifndef SPARSECODEC_CXX_FLAGS
#define SPARSECODEC_CXX_FLAGS ""
#endif

namespace {

// Whether numpy dtype `a` is `b`: the same kind and size in native byte order. Not object identity:
// numpy has two names for some types (uint64 is both ulong and ulonglong on Linux) and an unpickled
// array may carry either.
bool same_dtype(const py::dtype& a, const py::dtype& b) {
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

void require_len(const py::array& a, int axis, int64_t want, const char* name) {
    if (a.shape(axis) != want)
        throw std::invalid_argument(std::string(name) + ": axis " + std::to_string(axis) + " has length " +
                                    std::to_string(a.shape(axis)) + ", expected " + std::to_string(want));
}

// Patch positions copied out of the Python arrays (so no other thread can change them after the
// checks, while the GIL is released).
struct PatchLists {
    std::vector<std::vector<int64_t>> positions;
    std::vector<const int64_t*> ptrs;
    std::vector<int64_t> counts;
};

PatchLists require_patches(const py::list& patches, int q, int64_t length) {
    if (int(patches.size()) != q)
        throw std::invalid_argument("expected one patch array per plane (" + std::to_string(q) + "), got " +
                                    std::to_string(patches.size()));
    PatchLists out;
    for (int i = 0; i < q; ++i) {
        py::array_t<int64_t> a = require_array<int64_t>(patches[size_t(i)], "patches", 1);
        out.positions.emplace_back(a.data(), a.data() + a.shape(0));
        const std::vector<int64_t>& p = out.positions.back();
        for (size_t j = 0; j < p.size(); ++j)
            if (p[j] < 0 || p[j] >= length || (j > 0 && p[j] <= p[j - 1]))
                throw std::invalid_argument("patch positions must be strictly ascending and inside the plane");
    }
    for (const auto& p : out.positions) {
        out.ptrs.push_back(p.data());
        out.counts.push_back(int64_t(p.size()));
    }
    return out;
}

PlaneGeometry geometry(const XorNetwork& net, int64_t length, int64_t chain, const std::string& layout,
                       int group_bands) {
    PlaneGeometry geo{length, chain};
    if (layout == "linear")
        geo.layout = LayoutKind::linear;
    else if (layout == "scatter")
        geo.layout = LayoutKind::scatter;
    else
        throw std::invalid_argument("layout must be 'linear' or 'scatter', got '" + layout + "'");
    if (group_bands < 1 || group_bands > kMaxGroupBands)
        throw std::invalid_argument("group_bands must be between 1 and " + std::to_string(kMaxGroupBands));
    geo.group_bands = group_bands;
    check_geometry(net, geo);
    return geo;
}

int64_t matrix_size(int64_t rows, int64_t cols) {
    int64_t size = 0;
    if (rows < 1 || cols < 1 || __builtin_mul_overflow(rows, cols, &size) || size > kMaxPlaneLength)
        throw std::invalid_argument("rows and cols must be positive with rows * cols at most 2^48");
    return size;
}

ScaleLayout scale_layout(const py::array_t<float>& scales, int64_t rows, int64_t cols, int64_t group_size, int q) {
    matrix_size(rows, cols);
    if (group_size < 1 || group_size > cols) throw std::invalid_argument("group_size must be between 1 and cols");
    if (q < 1 || q > kMaxBits) throw std::invalid_argument("bits must be between 1 and 8");
    const int64_t groups = (cols - 1) / group_size + 1;
    require_len(scales, 0, rows, "scales");
    require_len(scales, 1, groups, "scales");
    require_len(scales, 2, q, "scales");
    return ScaleLayout{cols, group_size, groups, q, scales.data()};
}

// Per-group offsets (rows, groups) of a weight, or None: checked against its scale layout.
const float* offsets_of(const py::object& obj, const ScaleLayout& layout, int64_t rows, py::array_t<float>& keep) {
    if (obj.is_none()) return nullptr;
    keep = require_array<float>(obj, "offsets", 2);
    require_len(keep, 0, rows, "offsets");
    require_len(keep, 1, layout.groups, "offsets");
    for (int64_t i = 0; i < keep.size(); ++i)
        if (!std::isfinite(keep.data()[i])) throw std::invalid_argument("offsets must be finite");
    return keep.data();
}

// Wraps care_rank / care_select: (mask words, length, int64 vector) -> int64 vector.
template <class Fn>
py::array_t<int64_t> map_over_mask(const py::object& mask_obj, int64_t length, const py::object& in_obj,
                                   const char* name, Fn fn) {
    auto mask = require_array<uint64_t>(mask_obj, "mask", 1);
    auto in = require_array<int64_t>(in_obj, name, 1);
    if (length < 1 || length > kMaxPlaneLength) throw std::invalid_argument("length must be between 1 and 2^48");
    require_len(mask, 0, (length + 63) / 64, "mask");
    py::array_t<int64_t> out(in.shape(0));
    fn(mask.data(), length, in.data(), in.shape(0), out.mutable_data());
    return out;
}

// A bitmap (flat keep bits) or a low-rank mask: ("bitmap", words) or ("lowrank", left, right, tile_rows,
// tile_cols, rank), checked against the matrix shape.
struct MaskArrays {
    py::array_t<uint64_t> bitmap, left, right;
    MaskSource source;
};

MaskArrays require_mask(const py::tuple& spec, int64_t rows, int64_t cols) {
    MaskArrays m;
    if (spec.size() == 2 && py::str(spec[0]).cast<std::string>() == "bitmap") {
        m.bitmap = require_array<uint64_t>(spec[1], "mask", 1);
        require_len(m.bitmap, 0, (rows * cols + 63) / 64, "mask");
        m.source.bitmap = m.bitmap.data();
        return m;
    }
    if (spec.size() == 6 && py::str(spec[0]).cast<std::string>() == "lowrank") {
        LowRankGeometry geo{rows, cols, spec[3].cast<int64_t>(), spec[4].cast<int64_t>(), spec[5].cast<int>()};
        check_lowrank_geometry(geo);
        m.left = require_array<uint64_t>(spec[1], "left", 2);
        m.right = require_array<uint64_t>(spec[2], "right", 3);
        require_len(m.left, 0, geo.col_blocks(), "left");
        require_len(m.left, 1, rows, "left");
        require_len(m.right, 0, geo.row_blocks(), "right");
        require_len(m.right, 1, geo.rank, "right");
        require_len(m.right, 2, geo.row_words(), "right");
        for (int64_t i = 0; i < m.left.size(); ++i)
            if (geo.rank < 64 && (m.left.data()[i] >> geo.rank))
                throw std::invalid_argument("left factor words use bits beyond the rank");
        m.source = MaskSource{nullptr, geo, m.left.data(), m.right.data()};
        return m;
    }
    throw std::invalid_argument("mask must be ('bitmap', words) or ('lowrank', left, right, tile_rows, tile_cols, rank)");
}

// A weight's sparse form, built (and so validated) natively; Python holds it as an opaque object.
struct SparsePlanHolder {
    int64_t rows, cols, group_size;
    int q;
    std::vector<int64_t> seg;
    std::vector<uint16_t> entries;
    std::vector<uint8_t> codes;
    SparsePlan view() const { return SparsePlan{seg.data(), entries.data(), codes.empty() ? nullptr : codes.data(), q}; }
};

struct DecodedBitsHolder {
    DecodedBits bits;
};

// An encoded weight as the kernels see it: built once from its arrays and parameters, checked, and
// kept (Python caches it beside the EncodedWeight). Owns the network and the arrays it points into;
// patch positions are copied, so nothing can change them while the GIL is released.
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
                                          int64_t chain, const std::string& layout_name, int group_bands) {
    auto nw = std::make_unique<NativeWeight>();
    nw->net.reset(new XorNetwork(n_in, n_out, depth, seed));
    const PlaneGeometry geo = geometry(*nw->net, matrix_size(rows, cols), chain, layout_name, group_bands);
    nw->code = require_array<uint64_t>(code_obj, "code", 2);
    require_len(nw->code, 1, geo.code_words(*nw->net), "code");
    const int q = int(nw->code.shape(0));
    nw->scales = require_array<float>(scales_obj, "scales", 3);
    ScaleLayout layout = scale_layout(nw->scales, rows, cols, group_size, q);
    layout.offsets = offsets_of(offsets_obj, layout, rows, nw->offsets);
    nw->patches = require_patches(patches_obj, q, geo.length);
    nw->mask = require_mask(mask_spec, rows, cols);
    nw->weight = MatmulWeight{nw->net.get(), geo, nw->code.data(), nw->patches.ptrs, nw->patches.counts,
                              nw->mask.source, layout, rows, cols};
    return nw;
}

py::dict build_info() {
    py::dict d;
    d["version"] = SPARSECODEC_VERSION;
#if defined(__clang__)
    d["compiler"] = std::string("clang ") + __clang_version__;
#elif defined(__GNUC__)
    d["compiler"] = std::string("gcc ") + __VERSION__;
#else
    d["compiler"] = "unknown";
#endif
    d["cxx_flags"] = SPARSECODEC_CXX_FLAGS;
    d["avx2_compiled"] = avx2_compiled();
    d["simd_detected"] = simd_level_name(detected_simd_level());
    d["simd_active"] = simd_level_name(active_simd_level());
    d["openmp"] = openmp_enabled();
    d["threads"] = max_threads();
    return d;
}

}  // namespace

PYBIND11_MODULE(_core, m) {
    m.doc() = "sparsecodec native kernels (internal: use the sparsecodec package API)";
    py::register_exception_translator([](std::exception_ptr p) {
        try {
            if (p) std::rethrow_exception(p);
        } catch (const std::invalid_argument& e) {
            PyErr_SetString(PyExc_ValueError, e.what());
        }
    });

    m.def("build_info", &build_info, "Build and runtime facts: version, compiler, SIMD, OpenMP.");
    m.def("simd_level", [] { return std::string(simd_level_name(active_simd_level())); });
    m.def(
        "set_simd_level", [](const std::string& name) { return std::string(simd_level_name(set_simd_level(parse_simd_level(name)))); },
        py::arg("level"), "Request 'scalar' or 'avx2' kernels (capped at what the CPU supports); returns the active level.");
    m.def("num_threads", &max_threads);
    m.def(
        "set_num_threads",
        [](int n) {
            if (n < 1) throw std::invalid_argument("number of threads must be at least 1");
            set_max_threads(n);
        },
        py::arg("n"));

    m.def("check_network", &check_network_params, py::arg("n_in"), py::arg("n_out"), py::arg("depth"));
    m.def(
        "xor_network_rows",
        [](int n_in, int n_out, int depth, uint64_t seed) {
            XorNetwork net(n_in, n_out, depth, seed);
            py::array_t<uint64_t> rows(net.n_out);
            std::memcpy(rows.mutable_data(), net.rows.data(), net.rows.size() * sizeof(uint64_t));
            return rows;
        },
        py::arg("n_in"), py::arg("n_out"), py::arg("depth"), py::arg("seed"));

    m.def(
        "encode_planes",
        [](py::object targets_obj, py::object care_obj, int64_t length, int n_in, int n_out, int depth,
           uint64_t seed, int64_t chain, const std::string& layout, int group_bands) {
            XorNetwork net(n_in, n_out, depth, seed);
            const PlaneGeometry geo = geometry(net, length, chain, layout, group_bands);
            auto targets = require_array<uint64_t>(targets_obj, "targets", 2);
            auto care = require_array<uint64_t>(care_obj, "care", 1);
            require_len(targets, 1, geo.plane_words(), "targets");
            require_len(care, 0, geo.plane_words(), "care");
            const int q = int(targets.shape(0));
            if (q < 1 || q > kMaxBits) throw std::invalid_argument("targets must hold 1 to 8 planes");
            const int64_t code_words = geo.code_words(net);
            py::array_t<uint64_t> code({int64_t(q), code_words});
            std::fill(code.mutable_data(), code.mutable_data() + q * code_words, uint64_t(0));
            std::vector<std::vector<int64_t>> patches;
            {
                py::gil_scoped_release release;
                encode_planes(net, geo, targets.data(), care.data(), q, code.mutable_data(), patches);
            }
            py::list out;
            for (auto& p : patches) {
                py::array_t<int64_t> a(int64_t(p.size()));
                if (!p.empty()) std::memcpy(a.mutable_data(), p.data(), p.size() * sizeof(int64_t));
                out.append(a);
            }
            return py::make_tuple(code, out);
        },
        py::arg("targets"), py::arg("care"), py::arg("length"), py::arg("n_in"), py::arg("n_out"), py::arg("depth"),
        py::arg("seed"), py::arg("chain"), py::arg("layout") = "linear", py::arg("group_bands") = 1,
        "Encode q bit-planes (uint64 words, LSB-first) under a care mask. Returns (code, patches).");

    m.def(
        "decode_planes",
        [](py::object code_obj, py::list patches_obj, int64_t length, int n_in, int n_out, int depth, uint64_t seed,
           int64_t chain, const std::string& layout, int group_bands) {
            XorNetwork net(n_in, n_out, depth, seed);
            const PlaneGeometry geo = geometry(net, length, chain, layout, group_bands);
            auto code = require_array<uint64_t>(code_obj, "code", 2);
            require_len(code, 1, geo.code_words(net), "code");
            const int q = int(code.shape(0));
            PatchLists patches = require_patches(patches_obj, q, length);
            py::array_t<uint64_t> out({int64_t(q), geo.plane_words()});
            {
                py::gil_scoped_release release;
                decode_planes(net, geo, code.data(), q, patches.ptrs, patches.counts, out.mutable_data());
            }
            return out;
        },
        py::arg("code"), py::arg("patches"), py::arg("length"), py::arg("n_in"), py::arg("n_out"), py::arg("depth"),
        py::arg("seed"), py::arg("chain"), py::arg("layout") = "linear", py::arg("group_bands") = 1,
        "Decode q bit-planes with their patches applied.");

    py::class_<NativeWeight>(m, "Weight",
                             "An encoded weight as the kernels take it: arrays and parameters checked once, then kept.")
        .def(py::init(&make_weight), py::kw_only(), py::arg("code"), py::arg("patches"), py::arg("mask"),
             py::arg("rows"), py::arg("cols"), py::arg("scales"), py::arg("offsets"), py::arg("group_size"),
             py::arg("n_in"), py::arg("n_out"), py::arg("depth"), py::arg("seed"), py::arg("chain"),
             py::arg("layout"), py::arg("group_bands"))
        .def_property_readonly("shape", [](const NativeWeight& nw) { return py::make_tuple(nw.weight.rows, nw.weight.cols); })
        .def_property_readonly("bits", [](const NativeWeight& nw) { return nw.weight.q(); })
        .def_property_readonly("has_offsets", [](const NativeWeight& nw) { return nw.weight.scales.offsets != nullptr; });

    m.def(
        "decode_dense",
        [](const NativeWeight& nw, py::object mask_obj, py::object out_obj) {
            const MatmulWeight& w = nw.weight;
            auto mask = require_array<uint64_t>(mask_obj, "mask", 1);
            require_len(mask, 0, w.geo.plane_words(), "mask");
            py::array_t<float> out;
            if (out_obj.is_none()) {
                out = py::array_t<float>({w.rows, w.cols});
            } else {
                out = require_array<float>(out_obj, "out", 2);
                require_len(out, 0, w.rows, "out");
                require_len(out, 1, w.cols, "out");
                if (!out.writeable()) throw std::invalid_argument("out must be writeable");
            }
            {
                py::gil_scoped_release release;
                decode_dense(*w.net, w.geo, w.code, w.q(), w.patches, w.patch_counts, mask.data(), w.scales,
                             out.mutable_data());
            }
            return out;
        },
        py::arg("weight"), py::arg("mask"), py::arg("out") = py::none(),
        "Decode an encoded matrix straight to dense float32 (planes, patches, mask and scales fused); mask: its "
        "keep bits.");

    m.def(
        "decode_row_set",
        [](const NativeWeight& nw, py::object rows_obj, py::object out_obj) {
            const MatmulWeight& w = nw.weight;
            auto rows = require_array<int64_t>(rows_obj, "rows", 1);
            auto out = require_array<float>(out_obj, "out", 2);
            require_len(out, 0, rows.shape(0), "out");
            require_len(out, 1, w.cols, "out");
            if (!out.writeable()) throw std::invalid_argument("out must be writeable");
            std::vector<int64_t> index(rows.data(), rows.data() + rows.shape(0));
            for (int64_t r : index)
                if (r < 0 || r >= w.rows) throw std::invalid_argument("row index out of range");
            py::gil_scoped_release release;
            decode_row_set(w, index.data(), int64_t(index.size()), out.mutable_data());
        },
        py::arg("weight"), py::arg("rows"), py::arg("out"),
        "Dequantised rows rows[i] of an encoded weight into out[i] (only those rows' slices are decoded).");

    m.def(
        "dequantize",
        [](py::object planes_obj, py::object mask_obj, int64_t rows, int64_t cols, py::object scales_obj,
           int64_t group_size, bool nontemporal, py::object offsets_obj) {
            auto planes = require_array<uint64_t>(planes_obj, "planes", 2);
            auto mask = require_array<uint64_t>(mask_obj, "mask", 1);
            auto scales = require_array<float>(scales_obj, "scales", 3);
            py::array_t<float> offsets;
            const int64_t words = (matrix_size(rows, cols) + 63) / 64;
            require_len(planes, 1, words, "planes");
            require_len(mask, 0, words, "mask");
            const int q = int(planes.shape(0));
            ScaleLayout layout = scale_layout(scales, rows, cols, group_size, q);
            layout.offsets = offsets_of(offsets_obj, layout, rows, offsets);
            py::array_t<float> out({rows, cols});
            {
                py::gil_scoped_release release;
                std::vector<const uint64_t*> ptrs;
                for (int i = 0; i < q; ++i) ptrs.push_back(planes.data() + i * words);
                dequant_range(layout, ptrs.data(), mask.data(), 0, rows * cols, out.mutable_data(), nontemporal);
            }
            return out;
        },
        py::arg("planes"), py::arg("mask"), py::arg("rows"), py::arg("cols"), py::arg("scales"), py::arg("group_size"),
        py::arg("nontemporal") = false, py::arg("offsets") = py::none(),
        "Dequantise already-decoded bit-planes (the reference for decode_dense's last step).");

    m.def(
        "care_rank",
        [](py::object mask, int64_t length, py::object positions) {
            return map_over_mask(mask, length, positions, "positions", care_rank);
        },
        py::arg("mask"), py::arg("length"), py::arg("positions"), "Index among the kept bits of each ascending position.");
    m.def(
        "care_select",
        [](py::object mask, int64_t length, py::object indices) {
            return map_over_mask(mask, length, indices, "indices", care_select);
        },
        py::arg("mask"), py::arg("length"), py::arg("indices"), "Flat position of each ascending kept-bit index.");

    m.def(
        "rice_bits",
        [](py::object values_obj, int k) {
            auto v = require_array<uint64_t>(values_obj, "values", 1);
            return rice_bits(v.data(), v.shape(0), k);
        },
        py::arg("values"), py::arg("k"));
    m.def(
        "rice_encode",
        [](py::object values_obj, int k) {
            auto v = require_array<uint64_t>(values_obj, "values", 1);
            std::vector<uint8_t> bytes = rice_encode(v.data(), v.shape(0), k);
            return py::bytes(reinterpret_cast<const char*>(bytes.data()), bytes.size());
        },
        py::arg("values"), py::arg("k"));
    m.def(
        "rice_decode",
        [](py::bytes data, int64_t n, int k, uint64_t max_value) {
            if (n < 0) throw std::invalid_argument("count must be non-negative");
            std::string_view view = data;
            // Each value costs at least one bit: reject absurd counts before allocating.
            if (n > int64_t(view.size()) * 8) throw std::invalid_argument("patch stream is shorter than its patch count");
            py::array_t<uint64_t> out(n);
            rice_decode(reinterpret_cast<const uint8_t*>(view.data()), int64_t(view.size()), n, k, max_value,
                        out.mutable_data());
            return out;
        },
        py::arg("data"), py::arg("n"), py::arg("k"), py::arg("max_value"));

    m.def(
        "decode_rows",
        [](const NativeWeight& nw, int64_t r0, int64_t r1, py::object out_obj) {
            const MatmulWeight& w = nw.weight;
            if (r0 < 0 || r1 > w.rows || r0 >= r1) throw std::invalid_argument("row range out of bounds");
            auto out = require_array<float>(out_obj, "out", 2);
            if (out.shape(0) < r1 - r0 || out.shape(1) != w.cols || !out.writeable())
                throw std::invalid_argument("out must be a writeable float32 array of at least (r1 - r0, cols)");
            {
                py::gil_scoped_release release;
                decode_rows(w, r0, r1, out.mutable_data());
            }
        },
        py::arg("weight"), py::arg("r0"), py::arg("r1"), py::arg("out"),
        "Dequantised rows [r0, r1) of an encoded weight into out (a decoded tile).");

    m.def(
        "matmul",
        [](py::object x_obj, const NativeWeight& nw, const std::string& strategy, py::object plan_obj) {
            const MatmulWeight& w = nw.weight;
            const int64_t rows = w.rows, cols = w.cols, group_size = w.scales.group_size;
            auto x = require_array<float>(x_obj, "x", 2);
            require_len(x, 1, cols, "x");
            MatmulStrategy kind;
            SparsePlan plan;
            const DecodedBits* bits = nullptr;
            if (strategy == "lut") {
                kind = MatmulStrategy::lut;
                if (!plan_obj.is_none()) {
                    bits = &plan_obj.cast<const DecodedBitsHolder&>().bits;
                    if (bits->rows != rows || bits->cols != cols || int(bits->planes.size()) != w.q())
                        throw std::invalid_argument("the DecodedBits were built for another weight shape or bit count");
                }
            } else if (strategy == "sparse") {
                kind = MatmulStrategy::sparse;
                if (plan_obj.is_none()) throw std::invalid_argument("the sparse strategy needs a SparsePlan");
                const SparsePlanHolder& holder = plan_obj.cast<const SparsePlanHolder&>();
                if (holder.rows != rows || holder.cols != cols || holder.group_size != group_size || holder.q != w.q())
                    throw std::invalid_argument("the SparsePlan was built for another weight shape or grouping");
                plan = holder.view();
            } else {
                throw std::invalid_argument("strategy must be 'lut' or 'sparse', got '" + strategy + "'");
            }
            const int64_t batch = x.shape(0);
            py::array_t<float> out({batch, rows});
            if (batch > 0) {
                py::gil_scoped_release release;
                compressed_matmul(w, kind, kind == MatmulStrategy::sparse ? &plan : nullptr, bits, x.data(), batch,
                                  out.mutable_data());
            }
            return out;
        },
        py::arg("x"), py::arg("weight"), py::arg("strategy"), py::arg("plan"),
        "x @ W^T from the compressed weight with the 'lut' kernel (plan: DecodedBits, or None to decode as it goes) "
        "or the 'sparse' kernel (plan: SparsePlan); returns (batch, rows) float32.");

    py::class_<DecodedBitsHolder>(m, "DecodedBits",
                                  "A weight's decoded sign planes and keep-mask for the lut kernel: (1 + q) bits per weight.")
        .def(py::init([](const NativeWeight& nw) {
                 auto holder = std::make_unique<DecodedBitsHolder>();
                 {
                     py::gil_scoped_release release;
                     decode_all_bits(nw.weight, holder->bits);
                 }
                 return holder;
             }),
             py::arg("weight"))
        .def_property_readonly("nbytes", [](const DecodedBitsHolder& h) { return h.bits.nbytes(); });

    py::class_<SparsePlanHolder>(m, "SparsePlan",
                                 "A weight's sparse form for the sparse kernel: per kept weight its column and bit pattern.")
        .def(py::init([](const NativeWeight& nw) {
                 const MatmulWeight& w = nw.weight;
                 auto holder = std::make_unique<SparsePlanHolder>(
                     SparsePlanHolder{w.rows, w.cols, w.scales.group_size, w.q(), {}, {}, {}});
                 {
                     py::gil_scoped_release release;
                     build_sparse_plan(w, holder->seg, holder->entries, holder->codes);
                 }
                 return holder;
             }),
             py::arg("weight"))
        .def_property_readonly("kept", [](const SparsePlanHolder& h) { return h.seg.back(); })
        .def_property_readonly("nbytes", [](const SparsePlanHolder& h) {
            return int64_t(h.seg.size() * sizeof(int64_t) + h.entries.size() * sizeof(uint16_t) + h.codes.size());
        });

    m.def(
        "layout_positions",
        [](int64_t length, int n_in, int n_out, int depth, uint64_t seed, int64_t chain, const std::string& layout,
           int group_bands) {
            XorNetwork net(n_in, n_out, depth, seed);
            const PlaneGeometry geo = geometry(net, length, chain, layout, group_bands);
            const SliceLayout sl = make_layout(net, geo);
            if (sl.padded_length() > (int64_t(1) << 26)) throw std::invalid_argument("plane too large to list");
            py::array_t<int64_t> out(sl.padded_length());
            for (int64_t p = 0; p < sl.padded_length(); ++p) out.mutable_data()[p] = sl.flat_position(p);
            return out;
        },
        py::arg("length"), py::arg("n_in"), py::arg("n_out"), py::arg("depth"), py::arg("seed"), py::arg("chain"),
        py::arg("layout"), py::arg("group_bands"),
        "Flat position of every slice-order position (slice t, offset j at index t * n_out + j); for tests.");

    m.def(
        "lowrank_decode",
        [](py::object left_obj, py::object right_obj, int64_t rows, int64_t cols, int64_t tile_rows, int64_t tile_cols,
           int rank) {
            const LowRankGeometry geo{rows, cols, tile_rows, tile_cols, rank};
            check_lowrank_geometry(geo);
            auto left = require_array<uint64_t>(left_obj, "left", 2);
            auto right = require_array<uint64_t>(right_obj, "right", 3);
            require_len(left, 0, geo.col_blocks(), "left");
            require_len(left, 1, rows, "left");
            require_len(right, 0, geo.row_blocks(), "right");
            require_len(right, 1, rank, "right");
            require_len(right, 2, geo.row_words(), "right");
            const uint64_t* l = left.data();
            for (int64_t i = 0; i < left.size(); ++i)
                if (rank < 64 && (l[i] >> rank))
                    throw std::invalid_argument("left factor words use bits beyond the rank");
            py::array_t<uint64_t> out((rows * cols + 63) / 64);
            {
                py::gil_scoped_release release;
                lowrank_decode(geo, left.data(), right.data(), out.mutable_data());
            }
            return out;
        },
        py::arg("left"), py::arg("right"), py::arg("rows"), py::arg("cols"), py::arg("tile_rows"), py::arg("tile_cols"),
        py::arg("rank"),
        "Keep-mask bits of a tiled low-rank binary index: left (col blocks, rows) rank-bit words, right (row blocks, "
        "rank, row words) full-width rows.");

    m.def(
        "trellis_transition",
        [](py::object key_obj, py::object u_obj, py::object v_obj, int k, const std::string& method) {
            auto key = require_array<uint32_t>(key_obj, "key", 1);
            auto u = require_array<uint64_t>(u_obj, "u", 1);
            auto v = require_array<uint64_t>(v_obj, "v", 1);
            const int64_t x = key.shape(0);
            if (x < 1 || x > 1024 || u.shape(0) != x || v.shape(0) != x)
                throw std::invalid_argument("key, u and v must have one equal length between 1 and 1024");
            if (k < 0 || k > 64) throw std::invalid_argument("k must be between 0 and 64");
            for (int64_t i = 0; i < x; ++i)
                if (k < 64 && ((u.data()[i] >> k) || (v.data()[i] >> k)))
                    throw std::invalid_argument("u and v must be below 2^k");
            py::array_t<uint32_t> best(x);
            if (method == "scalar") {
                trellis_transition_scalar(key.data(), u.data(), v.data(), int(x), best.mutable_data());
            } else if (method == "hypercube") {
                if (k > 20) throw std::invalid_argument("hypercube transition needs k <= 20");
                std::vector<uint32_t> scratch;
                trellis_transition_hypercube(key.data(), u.data(), v.data(), int(x), k, scratch, best.mutable_data());
            } else if (method == "avx2") {
#ifdef SPARSECODEC_HAS_AVX2
                if (detected_simd_level() != SimdLevel::avx2) throw std::invalid_argument("this CPU has no AVX2");
                if (k > 32 || x % 8 != 0) throw std::invalid_argument("avx2 transition needs k <= 32 and length % 8 == 0");
                trellis_transition_avx2(key.data(), u.data(), v.data(), int(x), best.mutable_data());
#else
                throw std::invalid_argument("built without AVX2 kernels");
#endif
            } else {
                throw std::invalid_argument("method must be 'scalar', 'hypercube' or 'avx2'");
            }
            return best;
        },
        py::arg("key"), py::arg("u"), py::arg("v"), py::arg("k"), py::arg("method"),
        "One min-plus trellis step (exposed so tests can compare the three implementations).");

    m.def(
        "spectral_product",
        [](py::object a_obj, py::object b_obj, bool conj_b, py::object out_obj) {
            // Strided complex64 views (numpy views of torch tensors): strides whole, non-negative
            // elements; b contiguous along j; out writable and disjoint from the inputs.
            auto view_of = [](const py::object& obj, const char* name) {
                if (!py::isinstance<py::array>(obj)) throw py::type_error(std::string(name) + " must be a numpy array");
                py::array arr = py::reinterpret_borrow<py::array>(obj);
                if (!same_dtype(arr.dtype(), py::dtype("complex64")))
                    throw py::type_error(std::string(name) + " must have dtype complex64, got " +
                                         std::string(py::str(arr.dtype())));
                if (arr.ndim() != 4) throw std::invalid_argument(std::string(name) + " must be 4-D");
                for (int d = 0; d < 4; ++d)
                    if (arr.size() > 0 && arr.shape(d) > 1 && (arr.strides(d) < 0 || arr.strides(d) % 8 != 0))
                        throw std::invalid_argument(std::string(name) +
                                                    ": strides must be whole, non-negative elements");
                if (reinterpret_cast<uintptr_t>(arr.data()) % alignof(float) != 0)
                    throw std::invalid_argument(std::string(name) + " must be aligned to float");
                return arr;
            };
            py::array a = view_of(a_obj, "a"), b = view_of(b_obj, "b"), out = view_of(out_obj, "out");
            if (!out.writeable()) throw std::invalid_argument("out must be writable");
            const SpectralProductShape shape{a.shape(0), a.shape(1), a.shape(2), b.shape(3), a.shape(3)};
            if (b.shape(0) != shape.groups || b.shape(1) != shape.bins || b.shape(2) != shape.depth ||
                out.shape(0) != shape.groups || out.shape(1) != shape.bins || out.shape(2) != shape.rows ||
                out.shape(3) != shape.cols)
                throw std::invalid_argument(
                    "spectral_product: a (G, M, I, K), b (G, M, K, J) and out (G, M, I, J) disagree");
            if (b.size() > 0 && shape.cols > 1 && b.strides(3) != 8)
                throw std::invalid_argument("spectral_product: b must be contiguous along its last axis");
            auto span = [](const py::array& arr) {  // [first, last) bytes an array touches
                const char* lo = static_cast<const char*>(arr.data());
                int64_t extent = 8;
                for (int d = 0; d < 4; ++d) {
                    if (arr.shape(d) == 0) return std::pair<const char*, const char*>(lo, lo);
                    extent += (arr.shape(d) - 1) * arr.strides(d);
                }
                return std::pair<const char*, const char*>(lo, lo + extent);
            };
            const auto o = span(out);
            for (const py::array* in : {&a, &b}) {
                const auto s = span(*in);
                if (o.first < o.second && s.first < s.second && o.first < s.second && s.first < o.second)
                    throw std::invalid_argument("spectral_product: out overlaps an input");
            }
            SpectralView<const float> av{static_cast<const float*>(a.data()), {}};
            SpectralView<const float> bv{static_cast<const float*>(b.data()), {}};
            SpectralView<float> ov{static_cast<float*>(out.mutable_data()), {}};
            for (int d = 0; d < 4; ++d) {
                av.stride[d] = a.strides(d) / 8;
                bv.stride[d] = b.strides(d) / 8;
                ov.stride[d] = out.strides(d) / 8;
            }
            py::gil_scoped_release release;
            spectral_product(shape, av, bv, conj_b, ov);
        },
        py::arg("a"), py::arg("b"), py::arg("conj_b"), py::arg("out"),
        "out[g, m, i, j] = sum_k a[g, m, i, k] * b[g, m, k, j] (b conjugated when conj_b) on complex64 spectra.");
}
