// Run-time choice between the portable scalar kernels, the AVX2/BMI2 kernels and the AVX-512 kernels.
//
// Every kernel has a scalar reference. The SIMD variants are compiled in their own translation units
// with target flags and are only called when the running CPU reports the features (never chosen by
// -march at build time). Tests force each level and compare results bit for bit. The kernels of each
// level are gathered in one table (kernel_table.h), selected by the active level. Levels are ordered:
// a level includes everything below it (the AVX-512 table keeps the AVX2 kernels it has no twin for).
#pragma once

#include <string>

namespace sc {

enum class SimdLevel : int { scalar = 0, avx2 = 1, avx512 = 2 };

// What the CPU and the operating system support: AVX2 + BMI2 + POPCNT + FMA for the avx2 level; in
// addition AVX-512 F, BW, VL, VNNI, VBMI and GFNI (with the OS saving the zmm state) for avx512.
SimdLevel detected_simd_level();
// The level kernels use now: the detected one unless lowered with set_simd_level.
SimdLevel active_simd_level();
// Requests a level; it is capped at the detected level. Returns the level now active.
SimdLevel set_simd_level(SimdLevel requested);
// For code that picks its AVX2 paths itself rather than through kernel_table.h (the trellis encoder).
inline bool use_avx2() { return active_simd_level() >= SimdLevel::avx2; }

const char* simd_level_name(SimdLevel level);
// Parses "scalar" / "avx2" / "avx512"; throws std::invalid_argument for anything else.
SimdLevel parse_simd_level(const std::string& name);

// Whether the AVX2 translation units were compiled in at all (false on non-x86 builds).
bool avx2_compiled();
// Whether the AVX-512 translation units were compiled in (false when the compiler lacks the flags).
bool avx512_compiled();

// OpenMP threads the kernels use (1 when built without OpenMP).
int max_threads();
void set_max_threads(int n);
bool openmp_enabled();

}  // namespace sc
