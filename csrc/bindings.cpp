// The module: its parts are registered by one file per concern (bind_*.cpp, declared in bind_util.h),
// thin wrappers over the kernels. They check types and shapes, release the GIL around the work, and
// throw std::invalid_argument, which becomes ValueError here.
#include <pybind11/pybind11.h>

#include <exception>
#include <stdexcept>

#include "bind_util.h"

namespace py = pybind11;

PYBIND11_MODULE(_core, m) {
    m.doc() = "sparsecodec native kernels (internal: use the sparsecodec package API)";
    py::register_exception_translator([](std::exception_ptr p) {
        try {
            if (p) std::rethrow_exception(p);
        } catch (const std::invalid_argument& e) {
            PyErr_SetString(PyExc_ValueError, e.what());
        }
    });

    using namespace sc::bindings;
    register_runtime(m);
    register_codec(m);
    register_weight(m);
    register_lowrank(m);
    register_spectral(m);
}
