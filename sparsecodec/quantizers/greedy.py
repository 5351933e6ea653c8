"""Greedy residual binarisation (BCQ, no offset): b_i = sign(r) (ties give +1), alpha_i = mean |r|."""

from __future__ import annotations

import numpy as np

from .base import Quantized, grouped, groups_for, register_method, row_blocks, scale_rounder, ungroup_planes


def greedy_fit(w: np.ndarray, keep: np.ndarray, bits: int, round_scale) -> tuple[np.ndarray, np.ndarray]:
    """Grouped (R, G, K) float64 weights -> alphas (R, G, bits) and signs (bits, R, G, K)."""
    residual = np.where(keep, w, 0.0)
    count = np.maximum(keep.sum(axis=-1), 1)
    alphas = np.zeros(w.shape[:2] + (bits,))
    signs = np.empty((bits,) + w.shape, dtype=bool)
    for i in range(bits):
        s = residual >= 0
        a = round_scale(np.abs(residual).sum(axis=-1) / count)
        alphas[..., i] = a
        signs[i] = s
        residual = residual - np.where(s, a[..., None], -a[..., None]) * keep
    return alphas, signs


@register_method("greedy")
def quantize_greedy(w, keep, bits, group_size, scale_dtype, iterations) -> Quantized:
    rows, cols = w.shape
    groups = groups_for(cols, group_size)
    round_scale = scale_rounder(scale_dtype)
    scales = np.zeros((rows, groups, bits), dtype=np.float32)
    planes = np.zeros((bits, rows, cols), dtype=bool)
    for r0, r1 in row_blocks(rows, groups, group_size, bits):
        alphas, signs = greedy_fit(
            grouped(w[r0:r1].astype(np.float64), group_size, 0.0),
            grouped(keep[r0:r1], group_size, False),
            bits,
            round_scale,
        )
        scales[r0:r1] = alphas
        planes[:, r0:r1] = ungroup_planes(signs, cols)
    return Quantized("bcq", "greedy", planes, group_size, scale_dtype, {"scales": scales})
