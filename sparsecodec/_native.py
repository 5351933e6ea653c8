"""Access to the compiled kernels (``sparsecodec._core``).

Importing sparsecodec never fails because the extension is missing or broken: the real import error
is raised, with advice, the first time a kernel is needed.
"""

from __future__ import annotations

from types import ModuleType

_core: ModuleType | None = None
_import_error: BaseException | None = None

try:
    from . import _core  # type: ignore[attr-defined, no-redef]
except ImportError as exc:  # pragma: no cover - exercised only on broken installs
    _import_error = exc


def core() -> ModuleType:
    """The compiled module, or an ImportError explaining how to get it."""
    if _core is None:
        raise ImportError(
            "sparsecodec's native extension (sparsecodec._core) could not be loaded: "
            f"{_import_error}. Reinstall with `pip install .` (or `pip install -e .`) from the "
            "source tree so that the C++ kernels are built; `python -m sparsecodec info` reports "
            "the build."
        ) from _import_error
    return _core


_simd_level: str | None = None


def simd_level() -> str:
    """The active SIMD level's name ("scalar", "avx2" or "avx512"), remembered here so that the
    per-call strategy choice does not cross into the extension; :func:`set_simd_level` keeps it
    current."""
    global _simd_level
    if _simd_level is None:
        _simd_level = str(core().simd_level())
    return _simd_level


def set_simd_level(level: str) -> str:
    """Request a SIMD level (capped at what the CPU supports); returns the level in use."""
    global _simd_level
    _simd_level = str(core().set_simd_level(level))
    return _simd_level
