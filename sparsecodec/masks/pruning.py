"""Choosing which weights to keep: magnitude pruning (per layer or global) and the gradual schedule.

Low-rank-index pruning, which chooses a mask that is a Boolean product of binary factors, is
:func:`sparsecodec.lowrank_mask`.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from ..validation import as_fraction


def magnitude_mask(weights: np.ndarray, sparsity: float) -> np.ndarray:
    """Keep-mask (True = kept) that prunes the ``round(sparsity * size)`` smallest-magnitude weights.

    Ties at the threshold are broken deterministically for a given input.
    """
    w = np.asarray(weights)
    n_prune = int(round(as_fraction(sparsity, "sparsity") * w.size))
    keep = np.ones(w.size, dtype=bool)
    if n_prune >= w.size:
        keep[:] = False
    elif n_prune > 0:
        magnitude = np.abs(w.reshape(-1))
        keep[np.argpartition(magnitude, n_prune - 1)[:n_prune]] = False
    return keep.reshape(w.shape)


def global_magnitude_masks(weights: Mapping[str, np.ndarray], sparsity: float) -> dict[str, np.ndarray]:
    """Keep-masks for several layers from one magnitude threshold over all of them together, so that
    the given share of all their weights is pruned (layers with larger weights keep more)."""
    if not weights:
        return {}
    names = list(weights)
    arrays = [np.asarray(weights[k]) for k in names]
    joined = magnitude_mask(np.concatenate([a.reshape(-1) for a in arrays]), sparsity)
    out, start = {}, 0
    for name, a in zip(names, arrays, strict=True):
        out[name] = joined[start : start + a.size].reshape(a.shape)
        start += a.size
    return out


def cubic_sparsity(
    step: int, final_sparsity: float, begin_step: int, end_step: int, initial_sparsity: float = 0.0
) -> float:
    """The gradual pruning schedule of Zhu & Gupta (2017): sparsity rises from ``initial_sparsity`` at
    ``begin_step`` to ``final_sparsity`` at ``end_step`` as s_f + (s_i - s_f) (1 - progress)^3 —
    fast at first, while the network has redundancy to spare, then slowly."""
    s_i, s_f = as_fraction(initial_sparsity, "initial_sparsity"), as_fraction(final_sparsity, "final_sparsity")
    if end_step <= begin_step:
        raise ValueError(f"end_step ({end_step}) must be after begin_step ({begin_step})")
    progress = min(1.0, max(0.0, (step - begin_step) / (end_step - begin_step)))
    return s_f + (s_i - s_f) * (1.0 - progress) ** 3
