"""Pricing a keep-mask in every index format."""

from __future__ import annotations

import math

import numpy as np
import pytest

import sparsecodec as sc


def test_small_mask_counted_by_hand():
    keep = np.zeros((2, 40), bool)
    keep[0, [0, 3]] = True
    keep[1, 39] = True  # flat position 79: distance 76 from position 3
    costs = sc.index_costs(keep)
    assert costs["bitmap"]["bits"] == 80
    assert costs["csr"]["bits"] == 32 * 3 + 3 * math.ceil(math.log2(40))
    # relative-4: distances 1, 3, 76 -> 76 needs ceil(76 / 16) - 1 = 4 fillers
    assert costs["relative4"]["fillers"] == 4 and costs["relative4"]["bits"] == 4 * (3 + 4)
    # relative-5: 76 needs ceil(76 / 32) - 1 = 2 fillers
    assert costs["relative5"]["fillers"] == 2 and costs["relative5"]["bits"] == 5 * (3 + 2)
    assert "lowrank" not in costs


def test_random_mask_matches_the_closed_forms(rng):
    s = 0.9
    keep = rng.random((512, 1024)) >= s
    costs = sc.index_costs(keep)
    assert costs["bitmap"]["bits_per_kept"] == pytest.approx(1 / (1 - s), rel=0.02)
    for b in (4, 5):  # fillers per kept entry ~ S^(2^b) / (1 - S^(2^b)) for i.i.d. masks
        expected = s ** (1 << b) / (1 - s ** (1 << b))
        assert costs[f"relative{b}"]["fillers"] / keep.sum() == pytest.approx(expected, rel=0.05)
    assert costs["entropy"]["bpw"] == pytest.approx(-(s * math.log2(s) + (1 - s) * math.log2(1 - s)), rel=0.01)


def test_lowrank_mask_is_priced_by_its_factors(rng):
    w = np.abs(rng.standard_normal((128, 96)))
    mask = sc.lowrank_mask(w, 0.9, 4, (64, 48))
    costs = sc.index_costs(mask)
    assert costs["lowrank"]["bits"] == mask.stored_bits() == 4 * (2 * 128 + 2 * 96)
    assert costs["bitmap"]["bits"] == w.size


def test_rejects_non_boolean():
    with pytest.raises(TypeError, match="boolean"):
        sc.index_costs(np.ones((3, 3)))
