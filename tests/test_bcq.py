"""Binary-coding quantisation: the fit, its options and its error report."""

from __future__ import annotations

import numpy as np
import pytest

import sparsecodec as sc


def test_one_bit_greedy_is_sign_times_mean_magnitude(rng):
    w = rng.standard_normal((6, 40)).astype(np.float32)
    mask = rng.random(w.shape) < 0.5
    q = sc.bcq_quantize(w, mask, 1)
    for r in range(6):
        kept = w[r][mask[r]]
        assert q.scales[r, 0, 0] == pytest.approx(np.abs(kept).mean(), rel=1e-6)
        assert np.array_equal(q.planes[0, r][mask[r]], kept >= 0)


def test_exactly_representable_rows_are_recovered():
    a1, a2 = 1.5, 0.25
    levels = np.array([a1 + a2, a1 - a2, -a1 + a2, -a1 - a2], np.float32)
    w = np.tile(levels, (3, 8))  # each row holds every level equally often
    mask = np.ones(w.shape, bool)
    for method in ("greedy", "alternating"):
        q = sc.bcq_quantize(w, mask, 2, method=method)
        out = sc.bcq_dequantize(q.scales, q.planes, mask, q.group_size)
        assert np.array_equal(out, w), method


def test_alternating_never_worse_than_greedy_and_error_falls_with_bits(rng):
    w = rng.standard_normal((64, 256)).astype(np.float32)
    mask = rng.random(w.shape) < 0.3
    errors = []
    for bits in (1, 2, 3, 4):
        g = sc.bcq_quantize(w, mask, bits, method="greedy")
        a = sc.bcq_quantize(w, mask, bits, method="alternating")
        eg = sc.quantization_error(w, sc.bcq_dequantize(g.scales, g.planes, mask, g.group_size), mask)["rmse"]
        ea = sc.quantization_error(w, sc.dequantize(a.scales, a.planes, mask, a.group_size, a.offsets), mask)["rmse"]
        assert ea <= eg * (1 + 1e-6)
        errors.append(ea)
    assert errors == sorted(errors, reverse=True)
    assert errors[1] < 0.9 * errors[0]  # alternating q=2 clearly beats greedy q=1


def test_only_kept_weights_matter(rng):
    w = rng.standard_normal((8, 50)).astype(np.float32)
    mask = rng.random(w.shape) < 0.4
    other = w.copy()
    other[~mask] = rng.standard_normal(int((~mask).sum())) * 100
    for method in ("greedy", "alternating"):
        a = sc.bcq_quantize(w, mask, 3, method=method)
        b = sc.bcq_quantize(other, mask, 3, method=method)
        assert np.array_equal(a.scales, b.scales)
        assert np.array_equal(a.planes[:, mask], b.planes[:, mask])


def test_groups_are_independent(rng):
    w = rng.standard_normal((5, 70)).astype(np.float32)
    mask = rng.random(w.shape) < 0.6
    grouped = sc.bcq_quantize(w, mask, 2, group_size=16)
    assert grouped.scales.shape == (5, 5, 2)
    for g in range(5):
        cols = slice(16 * g, min(70, 16 * g + 16))
        alone = sc.bcq_quantize(w[:, cols], mask[:, cols], 2)
        assert np.array_equal(alone.scales[:, 0, :], grouped.scales[:, g, :])
        assert np.array_equal(alone.planes, grouped.planes[:, :, cols])


def test_scales_sorted_non_negative_and_in_dtype(rng):
    w = rng.standard_normal((10, 64)).astype(np.float32) * 3
    mask = np.ones(w.shape, bool)
    for scale_dtype in ("float32", "float16"):
        q = sc.bcq_quantize(w, mask, 4, method="alternating", scale_dtype=scale_dtype)
        assert (q.scales >= 0).all()
        assert (np.diff(q.scales, axis=-1) <= 0).all()
        if scale_dtype == "float16":
            assert np.array_equal(q.scales.astype(np.float16).astype(np.float32), q.scales)


def test_empty_groups_get_zero_scales(rng):
    w = rng.standard_normal((3, 10)).astype(np.float32)
    mask = np.zeros(w.shape, bool)
    mask[1, 2] = True
    q = sc.bcq_quantize(w, mask, 2)
    assert (q.scales[0] == 0).all() and (q.scales[2] == 0).all()
    assert q.scales[1, 0, 0] == pytest.approx(abs(w[1, 2]))


def test_quantization_error_reported_by_encode(rng):
    w = rng.standard_normal((40, 60)).astype(np.float32)
    enc = sc.encode(w, sparsity=0.5, bits=2)
    mask = enc.mask.to_dense()
    expect = sc.quantization_error(w, sc.decode(enc), mask)
    assert enc.stats["quant_rmse"] == pytest.approx(expect["rmse"])
    assert enc.stats["quant_relative_error"] == pytest.approx(expect["relative"])
    assert 0 < expect["relative"] < 1


def test_bad_arguments():
    w = np.ones((2, 3), np.float32)
    with pytest.raises(ValueError, match="method"):
        sc.bcq_quantize(w, np.ones_like(w, bool), 2, method="magic")
    with pytest.raises(ValueError, match="scale_dtype"):
        sc.bcq_quantize(w, np.ones_like(w, bool), 2, scale_dtype="int8")
    with pytest.raises(ValueError, match="shape"):
        sc.bcq_quantize(w, np.ones((3, 2), bool), 2)
