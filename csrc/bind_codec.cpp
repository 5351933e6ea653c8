// The codec's building blocks: XOR networks, plane encoding and decoding, care-mask rank/select, Rice
// coding of patches, slice layouts and the trellis transition (exposed for tests).
#include "bind_util.h"

#include <algorithm>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

#include "cpu_dispatch.h"
#include "patch_coding.h"
#include "plane_codec.h"
#include "slice_layout.h"
#include "trellis_encoder.h"
#include "xor_network.h"

namespace sc {
namespace bindings {

namespace {

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

}  // namespace

void register_codec(py::module_& m) {
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
                decode_planes(net, geo, code.data(), q, patches.lists, out.mutable_data());
            }
            return out;
        },
        py::arg("code"), py::arg("patches"), py::arg("length"), py::arg("n_in"), py::arg("n_out"), py::arg("depth"),
        py::arg("seed"), py::arg("chain"), py::arg("layout") = "linear", py::arg("group_bands") = 1,
        "Decode q bit-planes with their patches applied.");

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
                if (detected_simd_level() < SimdLevel::avx2) throw std::invalid_argument("this CPU has no AVX2");
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
}

}  // namespace bindings
}  // namespace sc
