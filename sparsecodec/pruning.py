"""Choosing which weights to keep."""

from __future__ import annotations

import numpy as np


def magnitude_mask(weights: np.ndarray, sparsity: float) -> np.ndarray:
    """Keep-mask (True = kept) that prunes the ``round(sparsity * size)`` smallest-magnitude weights.

    Ties at the threshold are broken deterministically for a given input.
    """
    w = np.asarray(weights)
    if not 0.0 <= float(sparsity) <= 1.0:
        raise ValueError(f"sparsity must be between 0 and 1, got {sparsity}")
    n_prune = int(round(float(sparsity) * w.size))
    keep = np.ones(w.size, dtype=bool)
    if n_prune >= w.size:
        keep[:] = False
    elif n_prune > 0:
        magnitude = np.abs(w.reshape(-1))
        keep[np.argpartition(magnitude, n_prune - 1)[:n_prune]] = False
    return keep.reshape(w.shape)
