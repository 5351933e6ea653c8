"""Build and runtime facts for bug reports: ``sparsecodec.build_info()``, ``python -m sparsecodec info``."""

from __future__ import annotations

import platform
from typing import Any

import numpy as np

from . import _native
from .formats.stream import FORMAT_VERSION

__version__ = "0.1.0"


def build_info() -> dict[str, Any]:
    """Package and stream-format versions, compiler, SIMD level in use, OpenMP threads."""
    info: dict[str, Any] = {
        "version": __version__,
        "stream_format_version": FORMAT_VERSION,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "machine": platform.machine(),
    }
    try:
        native = dict(_native.core().build_info())
    except ImportError as exc:
        info["native"] = f"unavailable: {exc}"
        return info
    info["native_version"] = native.pop("version")
    info.update(native)
    return info


def set_num_threads(n: int) -> None:
    """Threads the native kernels use (default: OpenMP's default, or SPARSECODEC_NUM_THREADS)."""
    _native.core().set_num_threads(int(n))


def get_num_threads() -> int:
    return int(_native.core().num_threads())


def set_simd_level(level: str) -> str:
    """Use ``"scalar"``, ``"avx2"`` or ``"avx512"`` kernels (capped at what the CPU supports); returns
    the level in use. The environment variable ``SPARSECODEC_SIMD`` sets the starting level the same
    way (the best one the CPU and OS support by default).

    A strategy's results are identical at every level; this exists for testing and for ruling out
    SIMD bugs. (``strategy="auto_int8"`` considers the int8 strategies only at the AVX-512 level,
    where their vector kernels run, so below it it picks as ``"auto"`` does.)
    """
    return _native.set_simd_level(level)


def format_build_info(info: dict[str, Any]) -> str:
    width = max(len(k) for k in info)
    return "\n".join(f"{k.ljust(width)}  {v}" for k, v in info.items())
