"""Alternating least squares on BCQ with an offset: w ~ sum_i alpha_i b_i + beta per group.

Starts, per group, from the best of the greedy fit (beta = 0), the greedy fit of the weights less
their mean (beta = the mean) and the uniform grid written in BCQ form, then alternates
least-squares scales and offset given the codes with optimal codes given the scales (nearest of
the 2^q values by binary search), keeping each group's best iterate. The result is compared with
the exact uniform grid and the better of the two is returned, so it is never worse than "greedy"
or "uniform" (on the kept weights, in squared error).
"""

from __future__ import annotations

import numpy as np

from .base import (
    Quantized,
    dequantize,
    grouped,
    groups_for,
    reconstruct,
    register_method,
    row_blocks,
    scale_rounder,
    ungroup_planes,
)
from .greedy import greedy_fit
from .uniform import code_planes, quantize_uniform


def _group_errors(w, keep, alphas, signs, betas) -> np.ndarray:
    d = (w - reconstruct(alphas, signs, betas)) * keep
    return np.einsum("rgk,rgk->rg", d, d)


def _sign_combinations(bits: int) -> np.ndarray:
    idx = np.arange(1 << bits)
    return np.where((idx[:, None] >> np.arange(bits)) & 1, 1.0, -1.0)


def _nearest_codes(w: np.ndarray, alphas: np.ndarray, combos: np.ndarray) -> np.ndarray:
    """Optimal sign planes for fixed scales: binary search over the sorted 2**bits values."""
    bits = combos.shape[1]
    values = alphas @ combos.T  # (R, G, C)
    order = np.argsort(values, axis=-1, kind="stable")
    sorted_values = np.take_along_axis(values, order, axis=-1)
    mids = 0.5 * (sorted_values[..., 1:] + sorted_values[..., :-1])  # (R, G, C-1)
    idx = np.zeros(w.shape, dtype=np.int64)
    c = combos.shape[0]
    for level in range(bits):
        half = c >> (level + 1)
        probe = np.take_along_axis(mids, idx + half - 1, axis=-1)
        idx += half * (w > probe)
    chosen = np.take_along_axis(order, idx, axis=-1)  # combination index per weight
    return code_planes(chosen, bits)


def _uniform_start(step, zero, signs, bits, round_scale):
    """The uniform grid (step, zero point per group; its sign planes) in BCQ form, rounded."""
    step = np.asarray(step, dtype=np.float64)
    alphas = round_scale(step[..., None] * 2.0 ** np.arange(-1, bits - 1))
    betas = round_scale(step * (((1 << bits) - 1) / 2.0 - zero))
    return alphas, signs, betas


def _alternate(w, keep, bits, scale_dtype, iterations, uniform_start):
    round_scale = scale_rounder(scale_dtype)
    starts = [(*greedy_fit(w, keep, bits, round_scale), np.zeros(w.shape[:2]))]
    mean = round_scale(np.where(keep, w, 0.0).sum(axis=-1) / np.maximum(keep.sum(axis=-1), 1))
    starts.append((*greedy_fit(w - mean[..., None], keep, bits, round_scale), mean))
    starts.append(_uniform_start(*uniform_start, bits, round_scale))
    best = None
    for alphas, signs, betas in starts:
        err = _group_errors(w, keep, alphas, signs, betas)
        best = [err, alphas, signs, betas] if best is None else _keep_better(best, err, alphas, signs, betas)
    _, alphas, signs, betas = best
    combos = _sign_combinations(bits)
    ones = keep.astype(np.float64)
    wk = w * keep
    for _ in range(iterations):
        basis = np.concatenate([np.where(signs, 1.0, -1.0) * keep, ones[None]], axis=0)  # (bits + 1, R, G, K)
        gram = np.einsum("irgk,jrgk->rgij", basis, basis)
        rhs = np.einsum("irgk,rgk->rgi", basis, wk)
        solution = (np.linalg.pinv(gram) @ rhs[..., None])[..., 0]
        alphas = round_scale(-np.sort(-np.abs(solution[..., :bits]), axis=-1))
        betas = round_scale(solution[..., bits])
        signs = _nearest_codes(w - betas[..., None], alphas, combos)
        best = _keep_better(best, _group_errors(w, keep, alphas, signs, betas), alphas, signs, betas)
    return best[1], best[2], best[3]


def _keep_better(best, err, alphas, signs, betas):
    """Per group, the iterate with the smaller error: [error, alphas, signs, betas]."""
    better = err < best[0]
    return [
        np.where(better, err, best[0]),
        np.where(better[..., None], alphas, best[1]),
        np.where(better[None, ..., None], signs, best[2]),
        np.where(better, betas, best[3]),
    ]


@register_method("alternating")
def quantize_alternating(w, keep, bits, group_size, scale_dtype, iterations) -> Quantized:
    rows, cols = w.shape
    groups = groups_for(cols, group_size)
    scales = np.zeros((rows, groups, bits), dtype=np.float32)
    offsets = np.zeros((rows, groups), dtype=np.float32)
    planes = np.zeros((bits, rows, cols), dtype=bool)
    # The exact uniform grid is both a start of the refinement and the result to beat.
    uniform = quantize_uniform(w, keep, bits, group_size, scale_dtype, iterations)
    for r0, r1 in row_blocks(rows, groups, group_size, bits + 1):
        uniform_signs = np.stack([grouped(p, group_size, False) for p in uniform.planes[:, r0:r1]])
        a, s, b = _alternate(
            grouped(w[r0:r1].astype(np.float64), group_size, 0.0),
            grouped(keep[r0:r1], group_size, False),
            bits,
            scale_dtype,
            iterations,
            (uniform.params["step"][r0:r1], uniform.params["zero"][r0:r1], uniform_signs),
        )
        scales[r0:r1], offsets[r0:r1] = a, b
        planes[:, r0:r1] = ungroup_planes(s, cols)
    fitted = Quantized(
        "bcq-offset", "alternating", planes, group_size, scale_dtype, {"scales": scales, "offsets": offsets}
    )
    # The exact uniform grid can beat its rounded BCQ form: keep whichever decodes closer.
    errors = [_total_error(w, keep, q) for q in (fitted, uniform)]
    if errors[1] <= errors[0]:
        return Quantized("uniform", "alternating", uniform.planes, group_size, scale_dtype, uniform.params)
    return fitted


def _total_error(w, keep, q: Quantized) -> float:
    d = (dequantize(q.scales, q.planes, keep, q.group_size, q.offsets).astype(np.float64) - w) * keep
    return float(np.vdot(d, d))
