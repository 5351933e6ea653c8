"""Round to nearest on an asymmetric uniform q-bit grid per scale group (the grid RTN and GPTQ use).

Per group, over its kept weights: the range [min(w_min, 0), max(w_max, 0)] (so that 0 is on the
grid's span; an empty or all-zero group takes [-1, 1]), step s = range / (2^q - 1) rounded to the
scale dtype, zero point z = clip(round(-min / s), 0, 2^q - 1) and codes
k = clip(round(w / s) + z, 0, 2^q - 1); the value is s (k - z). Plane i holds bit i of k.
"""

from __future__ import annotations

import numpy as np

from .base import SCALE_DTYPES, Quantized, grouped, groups_for, register_method, row_blocks, ungroup_planes


def uniform_grid(w: np.ndarray, keep: np.ndarray, bits: int, scale_dtype: str):
    """Grouped (R, G, K) float64 weights -> step (R, G) in the scale dtype, zero (R, G) uint8 and
    codes k (R, G, K) int64."""
    maxq = (1 << bits) - 1
    lo = np.minimum(np.where(keep, w, np.inf).min(axis=-1), 0.0)
    hi = np.maximum(np.where(keep, w, -np.inf).max(axis=-1), 0.0)
    flat = ~(hi > lo)  # empty (inf bounds clipped to 0) or all-zero groups
    lo, hi = np.where(flat, -1.0, lo), np.where(flat, 1.0, hi)
    dtype = SCALE_DTYPES[scale_dtype]
    with np.errstate(over="ignore"):
        step = ((hi - lo) / maxq).astype(dtype)
    if not np.isfinite(step).all():
        raise ValueError(f"weights span too wide a range for {scale_dtype} steps; use scale_dtype='float32'")
    tiny = np.finfo(dtype).smallest_subnormal
    step = np.maximum(step, tiny).astype(np.float64)
    zero = np.clip(np.round(-lo / step), 0, maxq)
    codes = np.clip(np.round(w / step[..., None]) + zero[..., None], 0, maxq).astype(np.int64)
    return step, zero.astype(np.uint8), codes


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
        signs = ((k[None] >> np.arange(bits)[:, None, None, None]) & 1).astype(bool)
        planes[:, r0:r1] = ungroup_planes(signs, cols)
    return Quantized("uniform", "uniform", planes, group_size, scale_dtype, {"step": step, "zero": zero})
