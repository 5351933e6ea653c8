"""The low-rank binary index: decode, search, storage and use inside encoded weights."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import sparsecodec as sc

from conftest import assert_bit_equal, best_simd_level, reference_decode


def _boolean_product_reference(mask: sc.LowRankMask) -> np.ndarray:
    out = np.zeros(mask.shape, bool)
    th, tw = mask.tile
    row_blocks, col_blocks = mask.grid
    for a in range(row_blocks):
        for b in range(col_blocks):
            ia, ib = mask.tile_factors(a, b)
            out[a * th : (a + 1) * th, b * tw : (b + 1) * tw] = (ia.astype(int) @ ib.astype(int)) > 0
    return out


def _random_factors(rng, shape, rank, tile, density):
    row_blocks, col_blocks = -(-shape[0] // tile[0]), -(-shape[1] // tile[1])
    left = rng.random((col_blocks, shape[0], rank)) < density
    right = rng.random((row_blocks, rank, shape[1])) < density
    return sc.LowRankMask(shape, tile, left, right)


@settings(max_examples=40, deadline=None)
@given(
    rows=st.integers(1, 150),
    cols=st.integers(1, 300),
    rank=st.integers(1, 64),
    tile_rows=st.integers(1, 160),
    tile_cols=st.integers(1, 320),
    density=st.floats(0.0, 0.6),
    seed=st.integers(0, 2**32 - 1),
)
def test_decode_is_the_boolean_product(rows, cols, rank, tile_rows, tile_cols, density, seed):
    """Including tiles that do not divide the matrix, at every SIMD level."""
    mask = _random_factors(np.random.default_rng(seed), (rows, cols), rank, (tile_rows, tile_cols), density)
    want = _boolean_product_reference(mask)
    detected = best_simd_level()
    for level in ("scalar", detected):
        sc.set_simd_level(level)
        fresh = sc.LowRankMask(mask.shape, mask.tile, mask.left, mask.right)
        assert np.array_equal(fresh.to_dense(), want)
    sc.set_simd_level(detected)


def test_decode_multithreaded_matches_single(rng, threads):
    mask = _random_factors(rng, (777, 1000), 12, (200, 300), 0.3)
    assert np.array_equal(mask.to_dense(), _boolean_product_reference(mask))


def test_storage_cost_is_rank_times_tile_sides(rng):
    mask = _random_factors(rng, (100, 70), 5, (30, 40), 0.5)
    # 4 row blocks x 2 column blocks: rank * (2 * 100 + 4 * 70) bits
    assert mask.stored_bits() == 5 * (2 * 100 + 4 * 70)


@pytest.mark.parametrize("sparsity", [0.5, 0.9, 0.95])
@pytest.mark.parametrize("rank,tile", [(4, None), (8, (100, 128)), (3, (64, 77))])
def test_search_hits_the_sparsity_and_beats_random(sparsity, rank, tile, rng):
    w = rng.standard_normal((400, 300))
    mask = sc.lowrank_mask(np.abs(w), sparsity, rank, tile)
    achieved = 1 - mask.to_dense().mean()
    assert abs(achieved - sparsity) <= 0.005
    random_keep = rng.random(w.shape) >= sparsity
    assert sc.retained_importance(np.abs(w), mask) > sc.retained_importance(np.abs(w), random_keep) + 0.03


def test_tiling_beats_whole_matrix_at_equal_index_bits(rng):
    w = np.abs(rng.standard_normal((800, 500)))
    whole = sc.lowrank_mask(w, 0.9, 16)
    tiled = sc.lowrank_mask(w, 0.9, 4, (200, 125))  # 4 x 4 tiles of rank 4: the same bits as rank 16
    assert tiled.stored_bits() == whole.stored_bits()
    assert sc.retained_importance(w, tiled) > sc.retained_importance(w, whole)


def test_search_edge_cases_and_conv_weights(rng):
    w = rng.standard_normal((16, 8, 3, 3))  # conv weights: read as 16 x 72
    keep_all = sc.lowrank_mask(np.abs(w), 0.0, 2)
    assert keep_all.shape == (16, 72) and keep_all.to_dense().all()
    assert not sc.lowrank_mask(np.abs(w), 1.0, 2).to_dense().any()
    half = sc.lowrank_mask(np.abs(w), 0.5, 4)
    assert abs(half.to_dense().mean() - 0.5) < 0.05  # a 16-row matrix moves in coarse steps
    with pytest.raises(ValueError, match="non-negative"):
        sc.lowrank_mask(w, 0.5, 2)
    with pytest.raises(ValueError, match="rank"):
        sc.lowrank_mask(np.abs(w), 0.5, 65)


@pytest.mark.parametrize("depth", [1, 2])
def test_encoded_weight_with_lowrank_mask_round_trips(depth, rng):
    w = rng.standard_normal((300, 257)).astype(np.float32)
    enc = sc.encode(w, sparsity=0.9, bits=2, depth=depth, mask_format="lowrank", rank=6, tile=(100, 128))
    assert isinstance(enc.mask, sc.LowRankMask)
    keep = enc.mask.to_dense()
    out = sc.decode(enc)
    assert_bit_equal(out, reference_decode(w, keep, 2))
    again = sc.EncodedWeight.from_bytes(enc.to_bytes())
    assert isinstance(again.mask, sc.LowRankMask) and again.mask.tile == (100, 128)
    assert np.array_equal(again.mask.left, enc.mask.left) and np.array_equal(again.mask.right, enc.mask.right)
    assert_bit_equal(sc.decode(again), out)
    assert enc.stats["mask_bpw"] == pytest.approx(enc.mask.stored_bits() / w.size)
    assert enc.stats["mask_format"] == "lowrank"


def test_a_given_lowrank_mask_is_used_as_is(rng):
    w = rng.standard_normal((50, 60)).astype(np.float32)
    mask = _random_factors(rng, w.shape, 3, (25, 30), 0.3)
    enc = sc.encode(w, mask=mask, bits=1)
    assert enc.mask is mask
    assert_bit_equal(sc.decode(enc), reference_decode(w, mask.to_dense(), 1))


def test_lowrank_argument_errors(rng):
    w = rng.standard_normal((20, 30)).astype(np.float32)
    with pytest.raises(ValueError, match="chooses its own mask"):
        sc.encode(w, mask=np.ones(w.shape, bool), mask_format="lowrank")
    with pytest.raises(ValueError, match="apply to mask_format='lowrank'"):
        sc.encode(w, sparsity=0.5, rank=4)
    with pytest.raises(ValueError, match="importance shape"):
        sc.encode(w, sparsity=0.5, mask_format="lowrank", importance=np.ones((3, 3)))
    with pytest.raises(ValueError, match="left factor"):
        sc.LowRankMask((20, 30), (10, 10), np.zeros((2, 20, 4), bool), np.zeros((2, 4, 30), bool))
