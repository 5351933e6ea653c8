#include "cpu_dispatch.h"

#include <atomic>
#include <cstdlib>
#include <stdexcept>
#include <string>

#ifdef SPARSECODEC_HAS_OPENMP
#include <omp.h>
#endif

namespace sc {

namespace {

// __builtin_cpu_supports reports a feature only when the OS also saves its register state (libgcc
// checks XGETBV), so a kernel without zmm support in the OS falls back to avx2.
SimdLevel probe() {
#if defined(SPARSECODEC_HAS_AVX2) && (defined(__x86_64__) || defined(__i386__))
    __builtin_cpu_init();
    const bool avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("bmi2") &&
                      __builtin_cpu_supports("popcnt") && __builtin_cpu_supports("fma");
    if (!avx2) return SimdLevel::scalar;
#if defined(SPARSECODEC_HAS_AVX512)
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
        __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512vnni") &&
        __builtin_cpu_supports("avx512vbmi") && __builtin_cpu_supports("gfni"))
        return SimdLevel::avx512;
#endif
    return SimdLevel::avx2;
#endif
    return SimdLevel::scalar;
}

SimdLevel initial_level() {
    const SimdLevel detected = probe();
    // SPARSECODEC_SIMD=scalar|avx2|avx512 caps the level without rebuilding (to rule out a SIMD path,
    // or to test a lower level on a CPU that has more); an unknown name is ignored.
    if (const char* env = std::getenv("SPARSECODEC_SIMD")) {
        try {
            const SimdLevel wanted = parse_simd_level(env);
            return static_cast<int>(wanted) < static_cast<int>(detected) ? wanted : detected;
        } catch (const std::invalid_argument&) {
        }
    }
    return detected;
}

std::atomic<int>& level_slot() {
    static std::atomic<int> slot{static_cast<int>(initial_level())};
    return slot;
}

}  // namespace

SimdLevel detected_simd_level() {
    static const SimdLevel detected = probe();
    return detected;
}

SimdLevel active_simd_level() { return static_cast<SimdLevel>(level_slot().load(std::memory_order_relaxed)); }

SimdLevel set_simd_level(SimdLevel requested) {
    const SimdLevel detected = detected_simd_level();
    const SimdLevel chosen =
        static_cast<int>(requested) < static_cast<int>(detected) ? requested : detected;
    level_slot().store(static_cast<int>(chosen));
    return chosen;
}

const char* simd_level_name(SimdLevel level) {
    switch (level) {
        case SimdLevel::avx512: return "avx512";
        case SimdLevel::avx2: return "avx2";
        default: return "scalar";
    }
}

SimdLevel parse_simd_level(const std::string& name) {
    if (name == "scalar") return SimdLevel::scalar;
    if (name == "avx2") return SimdLevel::avx2;
    if (name == "avx512") return SimdLevel::avx512;
    throw std::invalid_argument("unknown SIMD level '" + name + "' (expected 'scalar', 'avx2' or 'avx512')");
}

bool avx2_compiled() {
#ifdef SPARSECODEC_HAS_AVX2
    return true;
#else
    return false;
#endif
}

bool avx512_compiled() {
#ifdef SPARSECODEC_HAS_AVX512
    return true;
#else
    return false;
#endif
}

namespace {
int default_threads() {
#ifdef SPARSECODEC_HAS_OPENMP
    if (const char* env = std::getenv("SPARSECODEC_NUM_THREADS")) {
        const int n = std::atoi(env);
        if (n >= 1) return n;
    }
    return omp_get_max_threads();
#else
    return 1;
#endif
}

std::atomic<int>& threads_slot() {
    static std::atomic<int> slot{default_threads()};
    return slot;
}
}  // namespace

// Kept in our own slot and passed to each parallel region with num_threads(), because OpenMP's
// own setting is per calling thread and Python may call in from several threads.
int max_threads() { return threads_slot().load(std::memory_order_relaxed); }

void set_max_threads(int n) {
#ifdef SPARSECODEC_HAS_OPENMP
    if (n >= 1) threads_slot().store(n);
#else
    (void)n;
#endif
}

bool openmp_enabled() {
#ifdef SPARSECODEC_HAS_OPENMP
    return true;
#else
    return false;
#endif
}

}  // namespace sc
