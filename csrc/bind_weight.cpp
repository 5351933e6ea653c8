// The native Weight and what runs on it: dense and row decoding, dequantisation of decoded planes, the
// compressed matmul and its run-time caches (DecodedBits, SparsePlan, LutInt8Weight).
#include "bind_util.h"

#include <memory>
#include <string>
#include <vector>

#include "dense_decode.h"
#include "dequant.h"
#include "int8_tiles.h"
#include "lut_int8.h"
#include "matmul.h"

namespace sc {
namespace bindings {

namespace {

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

struct LutInt8Holder {
    LutInt8Weight weight;
};

struct Int8TileValuesHolder {
    Int8TileValues values;
};

// A run-time cache object built natively with the GIL released: build(holder) fills it.
template <class Holder, class Build>
std::unique_ptr<Holder> built_without_gil(Holder&& start, Build&& build) {
    auto holder = std::make_unique<Holder>(std::move(start));
    py::gil_scoped_release release;
    build(*holder);
    return holder;
}

// A run-time matmul cache as a Python class: built from one `Source` argument with the GIL released
// (build(source, holder) fills it), reporting its size as `nbytes`.
template <class Holder, class Source, class Build, class Bytes>
void bind_cache(py::module_& m, const char* name, const char* doc, const char* arg, Build build, Bytes nbytes) {
    py::class_<Holder>(m, name, doc)
        .def(py::init([build](const Source& source) {
                 return built_without_gil(Holder{}, [&](Holder& h) { build(source, h); });
             }),
             py::arg(arg))
        .def_property_readonly("nbytes", nbytes);
}

}  // namespace

void register_weight(py::module_& m) {
    py::class_<NativeWeight>(m, "Weight",
                             "An encoded weight as the kernels take it: arrays and parameters checked once, then kept.")
        .def(py::init(&make_weight), py::kw_only(), py::arg("code"), py::arg("patches"), py::arg("mask"),
             py::arg("rows"), py::arg("cols"), py::arg("scales"), py::arg("offsets"), py::arg("group_size"),
             py::arg("n_in"), py::arg("n_out"), py::arg("depth"), py::arg("seed"), py::arg("chain"),
             py::arg("layout"), py::arg("group_bands"))
        .def_property_readonly("shape", [](const NativeWeight& nw) { return py::make_tuple(nw.weight.rows, nw.weight.cols); })
        .def_property_readonly("bits", [](const NativeWeight& nw) { return nw.weight.q(); })
        .def_property_readonly("has_offsets", [](const NativeWeight& nw) { return nw.weight.scales.offsets != nullptr; })
        .def_property_readonly("network_nbytes", [](const NativeWeight& nw) { return nw.net->nbytes(); },
                               "Bytes of the XOR network's decode tables this weight holds.");

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
                decode_dense(*w.net, w.geo, w.code, w.q(), w.patches, mask.data(), w.scales, out.mutable_data());
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
            if (strategy == "lut_int8") {
                if (plan_obj.is_none()) throw std::invalid_argument("the lut_int8 strategy needs a LutInt8Weight");
                const LutInt8Weight& lw = plan_obj.cast<const LutInt8Holder&>().weight;
                if (lw.rows != rows || lw.cols != cols || lw.q != w.q() || lw.groups != w.scales.groups)
                    throw std::invalid_argument("the LutInt8Weight was built for another weight shape or grouping");
                const int64_t batch = x.shape(0);
                py::array_t<float> out({batch, rows});
                if (batch > 0) {
                    py::gil_scoped_release release;
                    lut_int8_matmul(lw, x.data(), batch, out.mutable_data());
                }
                return out;
            }
            if (strategy == "lut") {
                kind = MatmulStrategy::lut;
                if (!plan_obj.is_none()) {
                    bits = &plan_obj.cast<const DecodedBitsHolder&>().bits;
                    if (bits->rows != rows || bits->cols != cols || int(bits->planes.size()) != w.q())
                        throw std::invalid_argument("the DecodedBits were built for another weight shape or bit count");
                    if (!bits->built_for(w))
                        throw std::invalid_argument("the DecodedBits were built for another weight's mask");
                }
            } else if (strategy == "sparse") {
                kind = MatmulStrategy::sparse;
                if (plan_obj.is_none()) throw std::invalid_argument("the sparse strategy needs a SparsePlan");
                const SparsePlanHolder& holder = plan_obj.cast<const SparsePlanHolder&>();
                if (holder.rows != rows || holder.cols != cols || holder.group_size != group_size || holder.q != w.q())
                    throw std::invalid_argument("the SparsePlan was built for another weight shape or grouping");
                plan = holder.view();
            } else {
                throw std::invalid_argument("strategy must be 'lut', 'lut_int8' or 'sparse', got '" + strategy + "'");
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
        "or the 'sparse' kernel (plan: SparsePlan) or the 'lut_int8' kernel (plan: LutInt8Weight); returns (batch, rows) "
        "float32.");

    bind_cache<LutInt8Holder, NativeWeight>(
        m, "LutInt8Weight",
        "A weight's decoded bits in the int8-table kernel's order, with its scales (the alphas as float16 when all "
        "of them are float16 values): about (1 + q) bits per weight (q when every weight is kept).",
        "weight", [](const NativeWeight& nw, LutInt8Holder& h) { build_lut_int8_weight(nw.weight, h.weight); },
        [](const LutInt8Holder& h) { return h.weight.nbytes(); });
    bind_cache<Int8TileValuesHolder, LutInt8Holder>(
        m, "Int8TileValues",
        "A weight's int8 values for the int8-tile kernel: per row and scale group a table of 2^q bytes, a scale and "
        "a sum.",
        "lut_weight",
        [](const LutInt8Holder& lw, Int8TileValuesHolder& h) { build_int8_tile_values(lw.weight, h.values); },
        [](const Int8TileValuesHolder& h) { return h.values.nbytes(); });

    m.def("lut_int8_lanes", &lut_int8_lanes, py::arg("q"),
          "Batch lanes the AVX-512 int8-table kernel shares each block's indices between, at q bits.");

    m.def(
        "matmul_int8_tiles",
        [](py::object x_obj, const LutInt8Holder& lw, const Int8TileValuesHolder& values) {
            const LutInt8Weight& w = lw.weight;
            if (!values.values.built_for(w)) throw std::invalid_argument("the Int8TileValues were built for another weight");
            auto x = require_array<float>(x_obj, "x", 2);
            require_len(x, 1, w.cols, "x");
            const int64_t batch = x.shape(0);
            py::array_t<float> out({batch, w.rows});
            if (batch > 0) {
                py::gil_scoped_release release;
                int8_tiles_matmul(w, values.values, x.data(), batch, out.mutable_data());
            }
            return out;
        },
        py::arg("x"), py::arg("lut_weight"), py::arg("values"),
        "x @ W^T through int8 tiles (weights and x in int8 per row and scale group); returns (batch, rows) float32.");

    m.def(
        "decoded_bits_nbytes", [](const NativeWeight& nw) { return decoded_bits_nbytes(nw.weight); }, py::arg("weight"),
        "Bytes a DecodedBits of this weight will hold, without building it.");
    m.def(
        "sparse_plan_nbytes", [](const NativeWeight& nw, int64_t kept) { return sparse_plan_nbytes(nw.weight, kept); },
        py::arg("weight"), py::arg("kept"), "Bytes a SparsePlan of this weight with `kept` kept weights will hold, without building it.");

    bind_cache<DecodedBitsHolder, NativeWeight>(
        m, "DecodedBits", "A weight's decoded sign planes for the lut kernel, q bits per weight (and its keep-mask, one bit more, unless the weight's is a bitmap, read where it is).",
        "weight", [](const NativeWeight& nw, DecodedBitsHolder& h) { decode_all_bits(nw.weight, h.bits); },
        [](const DecodedBitsHolder& h) { return h.bits.nbytes(); });

    py::class_<SparsePlanHolder>(m, "SparsePlan",
                                 "A weight's sparse form for the sparse kernel: per kept weight its column and bit pattern.")
        .def(py::init([](const NativeWeight& nw) {
                 const MatmulWeight& w = nw.weight;
                 return built_without_gil(SparsePlanHolder{w.rows, w.cols, w.scales.group_size, w.q(), {}, {}, {}},
                                          [&](SparsePlanHolder& h) { build_sparse_plan(w, h.seg, h.entries, h.codes); });
             }),
             py::arg("weight"))
        .def_property_readonly("kept", [](const SparsePlanHolder& h) { return h.seg.back(); })
        .def_property_readonly("nbytes", [](const SparsePlanHolder& h) {
            return int64_t(h.seg.size() * sizeof(int64_t) + h.entries.size() * sizeof(uint16_t) + h.codes.size());
        });
}

}  // namespace bindings
}  // namespace sc
