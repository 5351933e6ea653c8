// Build and run-time facts, the SIMD level and the thread count.
#include "bind_util.h"

#include <string>

#include "cpu_dispatch.h"

#ifndef SPARSECODEC_VERSION
#define SPARSECODEC_VERSION "0.0.0"
#endif
#ifndef SPARSECODEC_CXX_FLAGS
#define SPARSECODEC_CXX_FLAGS ""
#endif

namespace sc {
namespace bindings {

namespace {

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
    d["avx512_compiled"] = avx512_compiled();
    d["simd_detected"] = simd_level_name(detected_simd_level());
    d["simd_active"] = simd_level_name(active_simd_level());
    d["openmp"] = openmp_enabled();
    d["threads"] = max_threads();
    return d;
}

}  // namespace

void register_runtime(py::module_& m) {
    m.def("build_info", &build_info, "Build and runtime facts: version, compiler, SIMD, OpenMP.");

    m.def("simd_level", [] { return std::string(simd_level_name(active_simd_level())); });

    m.def(
        "set_simd_level", [](const std::string& name) { return std::string(simd_level_name(set_simd_level(parse_simd_level(name)))); },
        py::arg("level"), "Request 'scalar', 'avx2' or 'avx512' kernels (capped at what the CPU supports); returns the active level.");

    m.def("num_threads", &max_threads);

    m.def(
        "set_num_threads",
        [](int n) {
            if (n < 1) throw std::invalid_argument("number of threads must be at least 1");
            set_max_threads(n);
        },
        py::arg("n"));
}

}  // namespace bindings
}  // namespace sc
