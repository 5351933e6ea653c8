"""decode(encode(w, mask)) equals the BCQ-dequantised weights times the mask, bit for bit."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import sparsecodec as sc

from conftest import assert_bit_equal, reference_decode


def _masks(shape, rng):
    rows, cols = shape
    yield "random", rng.random(shape) < 0.3
    yield "none pruned", np.ones(shape, bool)
    yield "all pruned", np.zeros(shape, bool)
    structured = np.zeros(shape, bool)
    structured[:, ::3] = True  # whole columns kept (channel-like structure)
    structured[::4, :] = True
    yield "structured", structured
    block = np.zeros(shape, bool)
    block[: max(1, rows // 2), : max(1, cols // 2)] = True  # one dense corner, rest empty
    yield "block", block


@pytest.mark.parametrize("shape", [(1, 1), (3, 1000), (1000, 7), (17, 129), (64, 64), (300, 700)])
@pytest.mark.parametrize("bits", [1, 2, 3, 4])
@pytest.mark.parametrize("depth", [1, 2])
@pytest.mark.parametrize("layout", ["scatter", "linear"])
def test_round_trip_shapes_masks(shape, bits, depth, layout, rng):
    w = rng.standard_normal(shape).astype(np.float32)
    for name, mask in _masks(shape, rng):
        enc = sc.encode(w, mask=mask, bits=bits, depth=depth, layout=layout)
        out = sc.decode(enc)
        assert_bit_equal(out, reference_decode(w, mask, bits))
        again = sc.EncodedWeight.from_bytes(enc.to_bytes())
        assert_bit_equal(sc.decode(again), out), name


@pytest.mark.parametrize("depth,n_in,n_out", [(3, 5, 40), (4, 4, 24), (2, 10, 100), (1, 13, 29), (1, 64, 64)])
def test_round_trip_other_networks(depth, n_in, n_out, rng):
    w = rng.standard_normal((37, 211)).astype(np.float32)
    mask = rng.random(w.shape) < 0.25
    enc = sc.encode(w, mask=mask, bits=2, depth=depth, n_in=n_in, n_out=n_out, seed=99, chain=128)
    assert_bit_equal(sc.decode(enc), reference_decode(w, mask, 2))


@pytest.mark.parametrize("method", ["greedy", "alternating"])
@pytest.mark.parametrize("group_size", [None, 1, 16, 50])
@pytest.mark.parametrize("scale_dtype", ["float32", "float16"])
def test_round_trip_quantizer_options(method, group_size, scale_dtype, rng):
    w = rng.standard_normal((19, 101)).astype(np.float32)
    mask = rng.random(w.shape) < 0.4
    kwargs = dict(group_size=group_size, method=method, scale_dtype=scale_dtype)
    enc = sc.encode(w, mask=mask, bits=3, **kwargs)
    assert_bit_equal(sc.decode(enc), reference_decode(w, mask, 3, **kwargs))
    assert_bit_equal(sc.decode(sc.EncodedWeight.from_bytes(enc.to_bytes())), sc.decode(enc))


def test_round_trip_every_simd_level_and_thread_count(simd_level, threads, rng):
    w = rng.standard_normal((300, 257)).astype(np.float32)
    mask = rng.random(w.shape) < 0.12
    for depth in (1, 2):
        enc = sc.encode(w, mask=mask, bits=2, depth=depth)
        assert_bit_equal(sc.decode(enc), reference_decode(w, mask, 2))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    rows=st.integers(1, 80),
    cols=st.integers(1, 400),
    density=st.floats(0.0, 1.0),
    bits=st.integers(1, 4),
    depth=st.sampled_from([1, 2]),
    seed=st.integers(0, 2**32 - 1),
    net_seed=st.integers(0, 2**64 - 1),
    custom_network=st.booleans(),
    kind=st.sampled_from(["normal", "integers", "tiny", "huge"]),
    layout=st.sampled_from(["scatter", "linear"]),
)
def test_round_trip_property(rows, cols, density, bits, depth, seed, net_seed, custom_network, kind, layout):
    rng = np.random.default_rng(seed)
    shape = (rows, cols)
    if kind == "normal":
        w = rng.standard_normal(shape)
    elif kind == "integers":  # many ties and exact zeros
        w = rng.integers(-3, 4, shape).astype(float)
    elif kind == "tiny":
        w = rng.standard_normal(shape) * 1e-30
    else:
        w = rng.standard_normal(shape) * 1e30
    w = w.astype(np.float32)
    mask = rng.random(shape) < density
    kwargs = {}
    if custom_network:
        n_in = int(rng.integers(1, 11 if depth == 2 else 65))
        kwargs = dict(n_in=n_in, n_out=int(rng.integers(n_in, 4 * n_in + 2)))
    enc = sc.encode(w, mask=mask, bits=bits, depth=depth, seed=net_seed, chain=64, layout=layout, **kwargs)
    out = sc.decode(enc)
    assert_bit_equal(out, reference_decode(w, mask, bits))
    assert_bit_equal(sc.decode(sc.EncodedWeight.from_bytes(enc.to_bytes())), out)


def test_kept_bits_decode_exactly(rng):
    """Every kept bit of every plane decodes to the quantiser's bit (patches included)."""
    w = rng.standard_normal((128, 333)).astype(np.float32)
    mask = rng.random(w.shape) < 0.1
    for depth in (1, 2):
        enc = sc.encode(w, mask=mask, bits=3, depth=depth)
        planes = enc.decode_planes()
        want = sc.bcq_quantize(w, mask, 3).planes
        assert np.array_equal(planes[:, mask], want[:, mask])


def test_sparsity_argument_prunes_by_magnitude(rng):
    w = rng.standard_normal((50, 80)).astype(np.float32)
    enc = sc.encode(w, sparsity=0.9, bits=1)
    mask = enc.mask.to_dense()
    assert mask.sum() == 400
    assert np.abs(w[mask]).min() >= np.abs(w[~mask]).max()
    assert_bit_equal(sc.decode(enc), reference_decode(w, mask, 1))


def test_zeros_are_pruned_without_mask_or_sparsity(rng):
    w = rng.standard_normal((20, 30)).astype(np.float32)
    w[rng.random(w.shape) < 0.7] = 0.0
    enc = sc.encode(w, bits=2)
    assert np.array_equal(enc.mask.to_dense(), w != 0)


def test_decode_into_out(rng):
    w = rng.standard_normal((33, 70)).astype(np.float32)
    enc = sc.encode(w, sparsity=0.5)
    out = np.full(w.shape, np.nan, np.float32)
    result = sc.decode(enc, out=out)
    assert result is out or np.shares_memory(result, out)
    assert_bit_equal(out, sc.decode(enc))


def test_torch_free_float64_and_float16_inputs(rng):
    w64 = rng.standard_normal((10, 20))
    enc = sc.encode(w64, sparsity=0.5, bits=2)
    assert enc.source_dtype == "float64"
    mask = enc.mask.to_dense()
    assert_bit_equal(sc.decode(enc), reference_decode(w64.astype(np.float32), mask, 2))
    enc16 = sc.encode(w64.astype(np.float16), sparsity=0.5)
    assert enc16.source_dtype == "float16"
