"""Magnitude pruning and the gradual sparsity schedule."""

from __future__ import annotations

import numpy as np
import pytest

import sparsecodec as sc


def test_global_threshold_spans_layers(rng):
    big = rng.standard_normal((10, 10)) * 10
    small = rng.standard_normal((10, 10))
    masks = sc.global_magnitude_masks({"big": big, "small": small}, 0.5)
    assert masks["big"].sum() + masks["small"].sum() == 100
    assert masks["big"].sum() > masks["small"].sum()
    kept = np.concatenate([big[masks["big"]], small[masks["small"]]])
    pruned = np.concatenate([big[~masks["big"]], small[~masks["small"]]])
    assert np.abs(kept).min() >= np.abs(pruned).max()


def test_cubic_schedule():
    assert sc.cubic_sparsity(0, 0.9, 10, 110) == 0.0
    assert sc.cubic_sparsity(10, 0.9, 10, 110) == 0.0
    assert sc.cubic_sparsity(110, 0.9, 10, 110) == pytest.approx(0.9)
    assert sc.cubic_sparsity(500, 0.9, 10, 110) == pytest.approx(0.9)
    assert sc.cubic_sparsity(60, 0.9, 10, 110) == pytest.approx(0.9 - 0.9 * 0.5**3)
    steps = [sc.cubic_sparsity(t, 0.9, 0, 100, 0.2) for t in range(101)]
    assert steps == sorted(steps)
    increments = np.diff(steps)
    assert increments[0] > increments[-1]  # prunes fast first, slowly at the end
    with pytest.raises(ValueError, match="end_step"):
        sc.cubic_sparsity(0, 0.9, 10, 10)


def test_magnitude_mask_bounds():
    w = np.arange(10.0).reshape(2, 5)
    assert sc.magnitude_mask(w, 0.0).all()
    assert not sc.magnitude_mask(w, 1.0).any()
    assert sc.magnitude_mask(w, 0.3).sum() == 7
    with pytest.raises(ValueError, match="sparsity"):
        sc.magnitude_mask(w, 1.2)
