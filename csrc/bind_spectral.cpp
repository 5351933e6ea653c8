// The complex channel contraction of band-limited FFT convolution.
#include "bind_util.h"

#include <string>
#include <utility>

#include "spectral_product.h"

namespace sc {
namespace bindings {

void register_spectral(py::module_& m) {
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

}  // namespace bindings
}  // namespace sc
