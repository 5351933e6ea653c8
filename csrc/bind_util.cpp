// The argument checks and the native Weight shared by the bind_*.cpp files (see bind_util.h).
#include "bind_util.h"

#include <cmath>

#include "lowrank_mask.h"

namespace sc {
namespace bindings {

PatchLists require_patches(const py::list& patches, int q, int64_t length) {
    if (int(patches.size()) != q)
        throw std::invalid_argument("expected one patch array per plane (" + std::to_string(q) + "), got " +
                                    std::to_string(patches.size()));
    PatchLists out;
    for (int i = 0; i < q; ++i) {
        const py::handle obj = patches[size_t(i)];
        if (!py::isinstance<py::array>(obj)) throw py::type_error("patches must be numpy arrays");
        const py::dtype dtype = py::reinterpret_borrow<py::array>(obj).dtype();
        PatchList list;
        if (same_dtype(dtype, py::dtype::of<uint32_t>())) {
            auto a = require_array<uint32_t>(obj, "patches", 1);
            list = PatchList{a.data(), nullptr, a.shape(0)};
            out.arrays.push_back(a);
        } else if (same_dtype(dtype, py::dtype::of<int64_t>())) {
            auto a = require_array<int64_t>(obj, "patches", 1);
            list = PatchList{nullptr, a.data(), a.shape(0)};
            out.arrays.push_back(a);
        } else {
            throw py::type_error("patches must have dtype uint32 or int64, got " + std::string(py::str(dtype)));
        }
        for (int64_t j = 0; j < list.count; ++j)
            if (list.at(j) < 0 || list.at(j) >= length || (j > 0 && list.at(j) <= list.at(j - 1)))
                throw std::invalid_argument("patch positions must be strictly ascending and inside the plane");
        out.lists.push_back(list);
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

const float* offsets_of(const py::object& obj, const ScaleLayout& layout, int64_t rows, py::array_t<float>& keep) {
    if (obj.is_none()) return nullptr;
    keep = require_array<float>(obj, "offsets", 2);
    require_len(keep, 0, rows, "offsets");
    require_len(keep, 1, layout.groups, "offsets");
    for (int64_t i = 0; i < keep.size(); ++i)
        if (!std::isfinite(keep.data()[i])) throw std::invalid_argument("offsets must be finite");
    return keep.data();
}

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
    nw->weight = MatmulWeight{nw->net.get(), geo, nw->code.data(), nw->patches.lists,
                              nw->mask.source, layout, rows, cols};
    return nw;
}

}  // namespace bindings
}  // namespace sc
