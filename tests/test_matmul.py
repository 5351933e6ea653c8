"""sc.matmul against x @ decode(enc).T, every strategy, and every SIMD path against the scalar one."""

from __future__ import annotations

import copy
import dataclasses
import pickle
import sys
import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import sparsecodec as sc
from sparsecodec.matmul import cache_nbytes, choose_strategy, clear_caches, decode_rows

from conftest import available_simd_levels, best_simd_level, scalar_reference

STRATEGIES = ["sparse", "lut", "lut_stream", "dense"]


def _lut_runs(enc) -> bool:
    return enc.group_size >= enc.shape[1] or enc.group_size % 8 == 0


def _weights(rng):
    cases = []
    for shape, sparsity, bits, kwargs in [
        ((97, 131), 0.9, 1, {}),
        ((64, 256), 0.5, 2, {}),
        ((33, 70), 0.7, 3, {"group_size": 16}),
        ((120, 96), 0.9, 4, {"mask_format": "lowrank", "rank": 6, "tile": (64, 48)}),
        ((1, 9), 0.0, 2, {"layout": "linear"}),
        ((300, 8), 0.95, 1, {"depth": 1}),
        # wider than a panel of the batched sparse kernel, with groups that straddle panels
        ((40, 2500), 0.7, 2, {"group_size": 96}),
        # column and pattern too wide to pack in 16 bits: the sparse form keeps codes apart
        ((5, 17000), 0.8, 2, {}),
        ((24, 72), 0.6, 6, {}),  # more patterns than one vector holds
    ]:
        w = rng.standard_normal(shape).astype(np.float32)
        cases.append(sc.encode(w, sparsity=sparsity, bits=bits, **kwargs))
    return cases


@pytest.fixture(scope="module")
def encoded():
    return _weights(np.random.default_rng(3))


@pytest.mark.parametrize("strategy", ["dense", "sparse", "lut", "lut_stream", "lut_int8", "int8_tiles"])
def test_remembered_strategy_calls_follow_the_weight_data(strategy):
    """Each strategy's call is remembered on the weight with its caches bound: new data on the weight,
    or clear_caches, must drop it, never serve the old weight's product."""
    rng = np.random.default_rng(8)
    enc = sc.encode(rng.standard_normal((70, 96)).astype(np.float32), sparsity=0.5, bits=2)
    x = rng.standard_normal((5, 96)).astype(np.float32)
    before = sc.matmul(x, enc, strategy=strategy)
    enc.scales = enc.scales * 2  # a power of two: every strategy's product doubles exactly
    assert np.array_equal(sc.matmul(x, enc, strategy=strategy), 2 * before)
    clear_caches(enc)
    assert enc._runners is None and cache_nbytes(enc) == 0
    assert np.array_equal(sc.matmul(x, enc, strategy=strategy), 2 * before)


@pytest.mark.parametrize("batch", [1, 2, 7, 8, 9, 64, 130, 512])
def test_every_strategy_matches_the_decoded_weight(encoded, batch):
    rng = np.random.default_rng(batch)
    for enc in encoded:
        w = sc.decode(enc).astype(np.float64)
        x = rng.standard_normal((batch, enc.shape[1])).astype(np.float32)
        want = x.astype(np.float64) @ w.T
        scale = np.abs(x).astype(np.float64) @ np.abs(w).T + 1e-30
        for strategy in STRATEGIES:
            if strategy.startswith("lut") and not _lut_runs(enc):
                continue
            got = sc.matmul(x, enc, strategy=strategy)
            assert got.shape == (batch, enc.shape[0]) and got.dtype == np.float32
            assert (np.abs(got - want) <= 1e-5 * scale).all(), (enc, strategy)


@pytest.mark.parametrize("strategy", ["sparse", "lut", "lut_stream"])
@pytest.mark.parametrize("batch", [1, 5, 17, 100, 130])
def test_simd_kernels_equal_the_scalar_reference_bit_for_bit(encoded, strategy, batch):
    if len(available_simd_levels()) == 1:
        pytest.skip("CPU without AVX2")
    rng = np.random.default_rng(11)
    try:
        for enc in encoded:
            if strategy.startswith("lut") and not _lut_runs(enc):
                continue
            x = rng.standard_normal((batch, enc.shape[1])).astype(np.float32)
            sc.set_simd_level("scalar")
            scalar = sc.matmul(x, enc, strategy=strategy)
            for level in available_simd_levels()[1:]:
                sc.set_simd_level(level)
                simd = sc.matmul(x, enc, strategy=strategy)
                assert np.array_equal(scalar.view(np.uint32), simd.view(np.uint32)), (enc, level)
    finally:
        sc.set_simd_level(best_simd_level())


def test_thread_count_does_not_change_results(encoded, threads):
    x = np.random.default_rng(0).standard_normal((3, encoded[1].shape[1])).astype(np.float32)
    assert np.array_equal(sc.matmul(x, encoded[1], strategy="sparse"), sc.matmul(x, encoded[1], strategy="sparse"))
    assert np.array_equal(sc.matmul(x, encoded[1], strategy="lut"), sc.matmul(x, encoded[1], strategy="lut_stream"))


@pytest.mark.parametrize("batch", [1, 40, 300])
def test_cached_and_streaming_lookup_tables_agree_bit_for_bit(encoded, batch):
    rng = np.random.default_rng(batch)
    for enc in encoded:
        if _lut_runs(enc):
            x = rng.standard_normal((batch, enc.shape[1])).astype(np.float32)
            cached, streamed = sc.matmul(x, enc, strategy="lut"), sc.matmul(x, enc, strategy="lut_stream")
            assert np.array_equal(cached.view(np.uint32), streamed.view(np.uint32)), enc


def test_caches_are_built_on_demand_measured_dropped_and_never_pickled():
    rng = np.random.default_rng(5)
    enc = sc.encode(rng.standard_normal((64, 128)).astype(np.float32), sparsity=0.5, bits=2)
    x = rng.standard_normal((2, 128)).astype(np.float32)
    assert cache_nbytes(enc) == 0
    sc.matmul(x, enc, strategy="lut_stream")
    assert cache_nbytes(enc) == 0  # streaming keeps nothing
    sc.matmul(x, enc, strategy="lut")
    bits_only = cache_nbytes(enc)
    assert bits_only >= 2 * 64 * 128 // 8  # two planes, a bit per weight each (the mask is read in place)
    sc.matmul(x, enc, strategy="sparse")
    assert cache_nbytes(enc) >= bits_only + 2 * enc.mask.kept
    before = sc.matmul(x, enc, strategy="sparse")
    for twin in (pickle.loads(pickle.dumps(enc)), copy.deepcopy(enc)):  # caches stay behind
        assert cache_nbytes(twin) == 0 and cache_nbytes(enc) > 0
        assert np.array_equal(sc.matmul(x, twin, strategy="sparse"), before)
    clear_caches(enc)
    assert cache_nbytes(enc) == 0
    assert np.array_equal(sc.matmul(x, enc, strategy="sparse"), before)


def test_vector_input_transposed_product_and_decoded_rows(encoded):
    enc = encoded[0]
    rng = np.random.default_rng(1)
    x = rng.standard_normal(enc.shape[1]).astype(np.float32)
    assert sc.matmul(x, enc).shape == (enc.shape[0],)
    w = sc.decode(enc)
    g = rng.standard_normal((4, enc.shape[0])).astype(np.float32)
    np.testing.assert_allclose(sc.matmul_transposed(g, enc), g @ w, rtol=1e-5, atol=1e-5)
    assert np.array_equal(decode_rows(enc, 5, 40), w[5:40])


def test_the_remembered_choice_is_the_cost_models_per_batch_and_auto():
    from sparsecodec.matmul import candidate_strategies, predicted_ns

    enc = sc.encode(np.random.default_rng(4).standard_normal((256, 512)).astype(np.float32), sparsity=0.5, bits=2)
    for _ in range(2):  # the second round reads the remembered choices
        for auto in ("auto", "auto_int8"):
            for batch in (1, 8, 64, 512):
                best = min(candidate_strategies(enc, auto), key=lambda s: predicted_ns(s, enc, batch))
                assert choose_strategy(enc, batch, auto) == best
    enc.scales = enc.scales * 2  # new data: derived caches, the choices among them, are dropped
    assert enc._strategy_choices is None
    with pytest.raises(ValueError, match="auto must be one of"):
        choose_strategy(enc, 1, "fast")


def test_auto_picks_sparse_when_sparse_and_only_strategies_that_can_run():
    rng = np.random.default_rng(2)
    w = rng.standard_normal((512, 512)).astype(np.float32)
    assert choose_strategy(sc.encode(w, sparsity=0.95, bits=1), 1) == "sparse"
    # 1-bit with more than 32768 columns (no sparse form) and groups of 12 columns (no lookup tables)
    wide = sc.encode(rng.standard_normal((2, 33000)).astype(np.float32), sparsity=0.9, bits=1, group_size=12)
    x = rng.standard_normal((3, 33000)).astype(np.float32)
    assert choose_strategy(wide, 3) == "dense"
    np.testing.assert_allclose(sc.matmul(x, wide), x @ sc.decode(wide).T, rtol=1e-4, atol=1e-4)
    for strategy in ("sparse", "lut", "lut_stream"):
        with pytest.raises(ValueError, match=strategy):
            sc.matmul(x, wide, strategy=strategy)


def test_bad_inputs(encoded):
    enc = encoded[0]
    with pytest.raises(ValueError, match="features"):
        sc.matmul(np.ones((2, enc.shape[1] + 1), np.float32), enc)
    with pytest.raises(TypeError, match="floating"):
        sc.matmul(np.ones((2, enc.shape[1]), np.int32), enc)
    with pytest.raises(ValueError, match="strategy"):
        sc.matmul(np.ones((2, enc.shape[1]), np.float32), enc, strategy="fastest")
    with pytest.raises(ValueError, match="1-D"):
        sc.matmul(np.ones((2, 2, enc.shape[1]), np.float32), enc)
    odd_groups = sc.encode(np.ones((4, 20), np.float32), bits=1, group_size=5)
    with pytest.raises(ValueError, match="lut"):
        sc.matmul(np.ones((1, 20), np.float32), odd_groups, strategy="lut")
    with pytest.raises(TypeError, match="EncodedWeight"):
        sc.matmul(np.ones(3), "weights")


def test_derived_caches_follow_the_data():
    rng = np.random.default_rng(8)
    a, b = (sc.encode(rng.standard_normal((48, 64)).astype(np.float32), sparsity=0.5, bits=2) for _ in range(2))
    x = rng.standard_normal((3, 64)).astype(np.float32)
    for strategy in ("sparse", "lut"):
        sc.matmul(x, a, strategy=strategy)  # caches built on a
    mixed = dataclasses.replace(a, code=b.code, patches=b.patches, mask=b.mask, scales=b.scales)
    assert cache_nbytes(mixed) == 0
    moved = copy.copy(a)
    moved.code, moved.patches, moved.mask, moved.scales = b.code, b.patches, b.mask, b.scales
    assert cache_nbytes(moved) == 0
    want = sc.matmul(x, b, strategy="lut_stream")
    for twin in (mixed, moved):
        for strategy in ("sparse", "lut"):
            np.testing.assert_allclose(sc.matmul(x, twin, strategy=strategy), want, rtol=1e-5, atol=1e-5)


def test_empty_batches_and_read_only_inputs():
    rng = np.random.default_rng(9)
    enc = sc.encode(rng.standard_normal((16, 40)).astype(np.float32), sparsity=0.5, bits=2)
    for strategy in ("auto", "sparse", "lut", "dense"):
        assert sc.matmul(np.zeros((0, 40), np.float32), enc, strategy=strategy).shape == (0, 16)
    assert cache_nbytes(enc) == 0  # an empty batch builds nothing
    x = rng.standard_normal((3, 40)).astype(np.float32)
    x.flags.writeable = False
    g = rng.standard_normal((3, 16)).astype(np.float32)
    g.flags.writeable = False
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # torch warns when handed a read-only array
        np.testing.assert_allclose(sc.matmul(x, enc, strategy="dense"), x @ sc.decode(enc).T, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(sc.matmul_transposed(g, enc), g @ sc.decode(enc), rtol=1e-5, atol=1e-5)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    rows=st.integers(1, 40),
    cols=st.integers(1, 300),
    sparsity=st.sampled_from([0.0, 0.5, 0.9, 0.99]),
    bits=st.integers(1, 8),
    groups_of_8=st.integers(0, 5),  # 0: whole rows
    lowrank=st.booleans(),
    batch=st.integers(1, 120),
    seed=st.integers(0, 2**16),
    method=st.sampled_from(["greedy", "alternating", "uniform"]),
)
def test_random_weights_every_strategy_and_simd_level(
    rows, cols, sparsity, bits, groups_of_8, lowrank, batch, seed, method
):
    rng = np.random.default_rng(seed)
    kwargs = {"group_size": 8 * groups_of_8} if 0 < 8 * groups_of_8 < cols else {}
    if lowrank and sparsity > 0:
        kwargs.update(mask_format="lowrank", rank=2, tile=(min(rows, 16), min(cols, 64)))
    w32 = rng.standard_normal((rows, cols)).astype(np.float32) + np.float32(rng.normal())  # offsets matter
    enc = sc.encode(w32, sparsity=sparsity, bits=bits, method=method, **kwargs)
    w = sc.decode(enc).astype(np.float64)
    x = rng.standard_normal((batch, cols)).astype(np.float32)
    want = x.astype(np.float64) @ w.T
    # With an offset the lookup-table identity sums terms as large as sum(alpha) + |beta| per weight
    # that cancel: float32 rounding is relative to that bound, not to |w|.
    bound = np.abs(enc.scales).sum(axis=-1) + (0 if enc.offsets is None else np.abs(enc.offsets))
    per_col = np.repeat(bound, enc.group_size, axis=1)[:, :cols] * enc.mask.to_dense()
    scale = np.abs(x).astype(np.float64) @ np.maximum(np.abs(w), per_col).T + 1e-30
    simd = best_simd_level()
    for strategy in STRATEGIES:
        if strategy.startswith("lut") and not _lut_runs(enc):
            continue
        got = sc.matmul(x, enc, strategy=strategy)
        assert (np.abs(got - want) <= 1e-5 * scale).all(), strategy
        if strategy != "dense" and simd != "scalar":
            scalar = scalar_reference(lambda: sc.matmul(x, enc, strategy=strategy))  # noqa: B023
            assert np.array_equal(scalar.view(np.uint32), got.view(np.uint32)), strategy


def test_decoded_tiles_fall_back_to_numpy_without_torch(monkeypatch):
    rng = np.random.default_rng(10)
    enc = sc.encode(rng.standard_normal((300, 4000)).astype(np.float32), sparsity=0.7, bits=2)  # two tiles
    x = rng.standard_normal((5, 4000)).astype(np.float32)
    g = rng.standard_normal((5, 300)).astype(np.float32)
    with_torch = sc.matmul(x, enc, strategy="dense"), sc.matmul_transposed(g, enc)
    monkeypatch.setitem(sys.modules, "torch", None)  # `import torch` now raises ImportError
    without = sc.matmul(x, enc, strategy="dense"), sc.matmul_transposed(g, enc)
    w = sc.decode(enc)
    for got, want in zip((*with_torch, *without), (x @ w.T, g @ w) * 2, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
