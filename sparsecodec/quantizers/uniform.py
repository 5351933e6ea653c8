"""Round to nearest on an asymmetric uniform q-bit grid per scale group (the grid RTN and GPTQ use).

Per group, over its kept weights: the range [min(w_min, 0), max(w_max, 0)] (so that 0 is on the
grid's span; an empty or all-zero group takes [-1, 1]), step s = range / (2^q - 1) rounded to the
scale dtype, zero point z = clip(round(-min / s), 0, 2^q - 1) and codes
k = clip(round(w / s) + z, 0, 2^q - 1); the value is s (k - z). Plane i holds bit i of k.
"""

from __future__ import annotations

import numpy as np

from .base import SCALE_DTYPES, Quantized, grouped, groups_for, register_method, row_blocks, ungroup_planes


def grid_range(w: np.ndarray, keep: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The range [lo, hi] of each group's kept weights, widened to include 0 (over the last axis);
    an empty or all-zero group takes [-1, 1]."""
    lo = np.minimum(np.where(keep, w, np.inf).min(axis=-1), 0.0)
    hi = np.maximum(np.where(keep, w, -np.inf).max(axis=-1), 0.0)
    flat = ~(hi > lo)  # empty (inf bounds clipped to 0) or all-zero groups
    return np.where(flat, -1.0, lo), np.where(flat, 1.0, hi)


def grid_for_range(lo: np.ndarray, hi: np.ndarray, bits: int, scale_dtype: str) -> tuple[np.ndarray, np.ndarray]:
    """Step (float64 holding scale-dtype values) and integer zero point (float64) of the q-bit grid
    spanning [lo, hi] (lo <= 0 <= hi)."""
    maxq = (1 << bits) - 1
    dtype = SCALE_DTYPES[scale_dtype]
    with np.errstate(over="ignore"):
        step = ((hi - lo) / maxq).astype(dtype)
    if not np.isfinite(step).all():
        raise ValueError(f"weights span too wide a range for {scale_dtype} steps; use scale_dtype='float32'")
    tiny = np.finfo(dtype).smallest_subnormal
    step = np.maximum(step, tiny).astype(np.float64)
    return step, np.clip(np.round(-lo / step), 0, maxq)


def grid_codes(w: np.ndarray, step: np.ndarray, zero: np.ndarray, bits: int) -> np.ndarray:
    """Nearest grid codes k (int64) of ``w`` for a step and zero point per group (broadcast over the
    last axis of ``w``); the value of code k is step * (k - zero)."""
    return np.clip(np.round(w / step[..., None]) + zero[..., None], 0, (1 << bits) - 1).astype(np.int64)


def uniform_grid(w: np.ndarray, keep: np.ndarray, bits: int, scale_dtype: str):
    """Grouped (R, G, K) float64 weights -> step (R, G) in the scale dtype, zero (R, G) uint8 and
    codes k (R, G, K) int64."""
    step, zero = grid_for_range(*grid_range(w, keep), bits, scale_dtype)
    return step, zero.astype(np.uint8), grid_codes(w, step, zero, bits)


def code_planes(codes: np.ndarray, bits: int) -> np.ndarray:
    """Sign planes (bits, ...) of integer codes: plane i holds bit i."""
    shifts = np.arange(bits).reshape((bits,) + (1,) * codes.ndim)
    return ((codes[None] >> shifts) & 1).astype(bool)


@register_method("uniform")
def quantize_uniform(w, keep, bits, group_size, scale_dtype, iterations) -> Quantized:
    rows, cols = w.shape
    groups = groups_for(cols, group_size)
    dtype = SCALE_DTYPES[scale_dtype]
    step = np.zeros((rows, groups), dtype=np.float32)
    zero = np.zeros((rows, groups), dtype=np.uint8)
    planes = np.zeros((bits, rows, cols), dtype=bool)
    for r0, r1 in row_blocks(rows, groups, group_size, bits):
        s, z, k = uniform_grid(
            grouped(w[r0:r1].astype(np.float64), group_size, 0.0),
            grouped(keep[r0:r1], group_size, False),
            bits,
            scale_dtype,
        )
        step[r0:r1] = s.astype(dtype)
        zero[r0:r1] = z
        planes[:, r0:r1] = ungroup_planes(code_planes(k, bits), cols)
    return Quantized("uniform", "uniform", planes, group_size, scale_dtype, {"step": step, "zero": zero})
