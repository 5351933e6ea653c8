"""Checks on user input that turn mistakes into clear TypeError / ValueError messages."""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np


def as_weight_matrix(weights: Any, name: str = "weights") -> tuple[np.ndarray, str]:
    """A finite 2-D float32 array from ``weights`` (a numpy array, a CPU torch tensor or anything
    with ``__array__``), and the name of the source dtype."""
    if hasattr(weights, "detach") and hasattr(weights, "is_floating_point"):  # a torch tensor
        tensor = weights.detach().cpu()
        if not tensor.is_floating_point():
            raise TypeError(f"{name} must be a floating-point tensor, got {tensor.dtype}")
        source_dtype = str(tensor.dtype).replace("torch.", "")
        weights = tensor.float().numpy()
    else:
        source_dtype = None
    arr = np.asarray(weights)
    if arr.dtype == object or not np.issubdtype(arr.dtype, np.floating):
        raise TypeError(f"{name} must be a floating-point array, got dtype {arr.dtype}")
    source_dtype = source_dtype or str(arr.dtype)
    if arr.ndim != 2:
        raise ValueError(f"{name} must be a 2-D array (rows, cols), got shape {arr.shape}")
    if arr.size == 0:
        raise ValueError(f"{name} must not be empty, got shape {arr.shape}")
    with np.errstate(over="ignore"):  # values beyond float32 range become inf and are reported below
        out = np.ascontiguousarray(arr, dtype=np.float32)
    finite = np.isfinite(out)
    if not finite.all():
        bad = np.argwhere(~finite)
        r, c = (int(v) for v in bad[0])
        what = (
            "NaN" if np.isnan(out[r, c]) else ("infinity" if np.isinf(arr[r, c]) else "a value outside float32 range")
        )
        raise ValueError(
            f"{name} must be finite: {len(bad)} entries are NaN or infinite in float32 (first at [{r}, {c}]: {what})"
        )
    return out, source_dtype


def as_keep_mask(mask: Any, shape: tuple[int, ...]) -> np.ndarray:
    """A boolean keep-mask (True = kept) of the given shape. 0/1 numeric masks are accepted."""
    if hasattr(mask, "detach") and hasattr(mask, "cpu"):
        mask = mask.detach().cpu().numpy()
    arr = np.asarray(mask)
    if arr.dtype != bool:
        if arr.dtype == object or not (np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)):
            raise TypeError(f"mask must be a boolean array (True = kept), got dtype {arr.dtype}")
        if not np.isin(arr, (0, 1)).all():
            raise ValueError("mask must be boolean (True = kept) or hold only 0 and 1")
        arr = arr.astype(bool)
    if arr.shape != tuple(shape):
        raise ValueError(f"mask shape {arr.shape} does not match weights shape {tuple(shape)}")
    return np.ascontiguousarray(arr)


def as_int(value: Any, name: str, low: int, high: int) -> int:
    """An integer in [low, high] (bools and non-integral numbers are rejected)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {type(value).__name__}")
    v = int(value)
    if not low <= v <= high:
        raise ValueError(f"{name} must be between {low} and {high}, got {v}")
    return v


def as_fraction(value: Any, name: str) -> float:
    """A real number in [0, 1]."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number between 0 and 1, got {type(value).__name__}")
    v = float(value)
    if not 0.0 <= v <= 1.0:
        raise ValueError(f"{name} must be between 0 and 1, got {v}")
    return v


def as_choice(value: Any, name: str, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise ValueError(f"{name} must be one of {choices}, got {value!r}")
    return value
