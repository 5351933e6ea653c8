"""Choosing which weights to keep: magnitude pruning (per layer or global), Wanda (magnitude times
the input's activity, per output row) and the gradual schedule. SparseGPT, which chooses its mask
while it reconstructs the layer, is :func:`sparsecodec.calibration.second_order.solve`.

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


def input_norms_from_hessian(hessian: np.ndarray) -> np.ndarray:
    """The norm ||x_j|| of each input column over the calibration rows, from the diagonal of the
    Hessian X^T X (Wanda's activation statistic)."""
    return np.sqrt(np.maximum(np.diag(hessian), 0.0))


def _matrix(weights: np.ndarray) -> np.ndarray:
    w = np.asarray(weights)
    if w.ndim != 2:
        raise ValueError(f"weights must be a 2-D matrix, got shape {w.shape}")
    return w


def _statistic(values: np.ndarray, length: int, name: str, per: str) -> np.ndarray:
    """A per-row or per-column calibration statistic, checked: ``length`` finite non-negative floats."""
    v = np.asarray(values, dtype=np.float64)
    if v.shape != (length,):
        raise ValueError(f"{name} must have one entry per {per} ({length}), got shape {v.shape}")
    if not np.isfinite(v).all() or (v < 0).any():
        raise ValueError(f"{name} must be finite and non-negative")
    return v


def wanda_scores(weights: np.ndarray, input_norms: np.ndarray) -> np.ndarray:
    """Wanda's importance (Sun et al. 2023): ``|W_ij| * ||X_j||_2``, the weight's magnitude times the
    L2 norm of its input column over the calibration tokens (``sqrt(diag(X^T X))``)."""
    w = _matrix(weights)
    norms = _statistic(input_norms, w.shape[1], "input_norms", "input column")
    return np.abs(w).astype(np.float64) * norms[None, :]


def wanda_mask(weights: np.ndarray, input_norms: np.ndarray, sparsity: float) -> np.ndarray:
    """Keep-mask pruning, within each output row, the weights of lowest Wanda score; exactly
    ``round(sparsity * size)`` weights of the layer are pruned (rows differ by at most one)."""
    return row_balanced_mask(wanda_scores(weights, input_norms), sparsity)


def frequency_weighted_mask(weights: np.ndarray, row_counts: np.ndarray, sparsity: float) -> np.ndarray:
    """Keep-mask of an embedding table pruned for its calibration text: the ``round(sparsity * size)``
    weights of least ``|w| * sqrt(count of the row)`` go, over the whole table. This is Wanda's score
    (and the order of SparseGPT's ``w^2 / [H^-1]_jj``) for a layer whose inputs are one-hot: the
    Hessian is diagonal, each row's number of uses, so rows the text uses often keep more weights."""
    w = _matrix(weights)
    counts = _statistic(row_counts, w.shape[0], "row_counts", "row")
    return magnitude_mask(np.abs(w).astype(np.float64) * np.sqrt(counts)[:, None], sparsity)


def row_balanced_mask(scores: np.ndarray, sparsity: float) -> np.ndarray:
    """Keep-mask pruning the lowest ``scores`` of each row, so that the layer loses exactly
    ``round(sparsity * size)`` weights: row r prunes ``round(s*c*(r+1)) - round(s*c*r)`` of its c.
    Ties are broken by column, deterministically."""
    score = np.asarray(scores)
    rows, cols = score.shape
    target = as_fraction(sparsity, "sparsity") * cols
    counts = np.diff(np.round(target * np.arange(rows + 1)).astype(np.int64))
    ranks = np.argsort(np.argsort(score, axis=1, kind="stable"), axis=1, kind="stable")
    return ranks >= counts[:, None]


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
