"""Shared helpers for the test suite."""

from __future__ import annotations

import numpy as np
import pytest

import sparsecodec as sc
from sparsecodec.quantizers.reference import rtn_asymmetric as rtn_reference  # noqa: F401  (shared)


def reference_decode(w: np.ndarray, mask: np.ndarray, bits: int, **bcq_kwargs) -> np.ndarray:
    """What decode(encode(...)) must equal: the BCQ-dequantised weights times the mask, computed with
    the pure-numpy reference path only."""
    q = sc.bcq_quantize(w, mask, bits, **bcq_kwargs)
    return sc.dequantize(q.scales, q.planes, mask, q.group_size, q.offsets)


def assert_bit_equal(a: np.ndarray, b: np.ndarray) -> None:
    assert a.dtype == np.float32 and b.dtype == np.float32
    assert a.shape == b.shape
    mismatch = a.view(np.uint32) != b.view(np.uint32)
    assert not mismatch.any(), f"{int(mismatch.sum())} entries differ, first at {np.argwhere(mismatch)[0]}"


#: SIMD levels in order; a CPU with one has every level before it.
SIMD_LEVELS = ("scalar", "avx2", "avx512")


#: The level the test run starts at: the best the CPU has, unless SPARSECODEC_SIMD caps it (CI runs
#: the suite capped at avx2 and at scalar, as on a machine without AVX-512 or AVX2).
_BEST = sc.build_info()["simd_active"]


def best_simd_level() -> str:
    """The highest level tests may use (and restore after lowering it)."""
    return _BEST


def available_simd_levels() -> tuple[str, ...]:
    """The levels tests compare: every level up to :func:`best_simd_level`."""
    return SIMD_LEVELS[: SIMD_LEVELS.index(_BEST) + 1]


def scalar_reference(fn):
    """``fn()`` run once more on the scalar kernels (for SIMD == scalar comparisons); the best SIMD
    level is restored afterwards."""
    detected = best_simd_level()
    sc.set_simd_level("scalar")
    try:
        return fn()
    finally:
        sc.set_simd_level(detected)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


@pytest.fixture(params=SIMD_LEVELS)
def simd_level(request):
    """Run a test once per SIMD level the CPU has; restores the best level afterwards."""
    detected = best_simd_level()
    if request.param not in available_simd_levels():
        pytest.skip(f"CPU without {request.param}")
    sc.set_simd_level(request.param)
    yield request.param
    sc.set_simd_level(detected)


@pytest.fixture(params=[1, 2])
def threads(request):
    before = sc.get_num_threads()
    sc.set_num_threads(request.param)
    yield request.param
    sc.set_num_threads(before)
