"""The C++ kernels against independent references, and every SIMD path against the scalar one."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

import sparsecodec as sc
from sparsecodec._native import core
from sparsecodec.formats.bitpack import pack_bits, unpack_bits

from conftest import assert_bit_equal, available_simd_levels, best_simd_level


def _window_reference(code_words, length, n_in, n_out, depth, seed, chain):
    """Decoded plane by the definition: y_t = parity(row & window_t) per output bit."""
    rows = core().xor_network_rows(n_in, n_out, depth, seed)
    n_slices = -(-length // n_out)
    stored = unpack_bits(code_words, n_slices * n_in).reshape(n_slices, n_in)
    words = (stored.astype(np.uint64) << np.arange(n_in, dtype=np.uint64)).sum(axis=1).astype(np.uint64)
    out = np.zeros(n_slices * n_out, bool)
    for t in range(n_slices):
        window = 0
        for lag in range(depth):
            if t - lag >= (t // chain) * chain:
                window |= int(words[t - lag]) << (n_in * lag)
        for r in range(n_out):
            out[t * n_out + r] = bin(int(rows[r]) & window).count("1") & 1
    return out[:length]


def test_network_is_seeded_and_well_formed():
    a = core().xor_network_rows(8, 100, 2, 5)
    assert np.array_equal(a, core().xor_network_rows(8, 100, 2, 5))
    assert not np.array_equal(a, core().xor_network_rows(8, 100, 2, 6))
    assert (a != 0).all() and (a < (1 << 16)).all()


def _splitmix64_rows(n_in, n_out, depth, seed):
    """The stream-format-1 generator, written independently: row r is the r-th nonzero output of
    splitmix64(seed) masked to n_in * depth bits."""
    mask64 = (1 << 64) - 1
    state, rows = seed, []
    width_mask = (1 << (n_in * depth)) - 1
    while len(rows) < n_out:
        state = (state + 0x9E3779B97F4A7C15) & mask64
        z = state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & mask64
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & mask64
        z ^= z >> 31
        if z & width_mask:
            rows.append(z & width_mask)
    return rows


@pytest.mark.parametrize(
    "n_in,n_out,depth,seed", [(4, 6, 1, 0), (64, 70, 1, 2**64 - 1), (8, 90, 2, 12345), (1, 3, 1, 7)]
)
def test_network_generator_is_the_format_1_definition(n_in, n_out, depth, seed):
    # The generator is part of stream format 1 and must never change.
    assert core().xor_network_rows(n_in, n_out, depth, seed).tolist() == _splitmix64_rows(n_in, n_out, depth, seed)


@pytest.mark.parametrize(
    "n_in,n_out,depth,chain", [(8, 88, 2, 64), (64, 300, 1, 64), (5, 13, 1, 64), (3, 20, 3, 64), (4, 9, 4, 128)]
)
def test_decode_matches_gf2_definition(n_in, n_out, depth, chain, rng, simd_level):
    _check_decode(n_in, n_out, depth, chain, 64 * 50 + 17, rng)


def test_square_64_bit_network_decodes_to_the_definition(rng, simd_level):
    """Encode's network when nothing is pruned (n_in = n_out = 64): the AVX-512 level decodes 64
    slices at a time with GF2P8AFFINEQB, the rest one by one."""
    _check_decode(64, 64, 1, 64, 64 * 64 * 3 + 64 * 5 + 9, rng)


def _check_decode(n_in, n_out, depth, chain, length, rng):
    n_slices = -(-length // n_out)
    code = pack_bits(rng.random(n_slices * n_in) < 0.5)
    got = core().decode_planes(code[None], [np.zeros(0, np.int64)], length, n_in, n_out, depth, 7, chain)
    want = _window_reference(code, length, n_in, n_out, depth, 7, chain)
    assert np.array_equal(unpack_bits(got[0], length), want)


@pytest.mark.parametrize("rows,cols,group_size,bits", [(7, 13, 13, 1), (5, 100, 8, 2), (33, 65, 65, 3), (4, 40, 7, 8)])
def test_dequantize_simd_equals_scalar_equals_numpy(rows, cols, group_size, bits, rng):
    planes = rng.random((bits, rows, cols)) < 0.5
    mask = rng.random((rows, cols)) < 0.7
    groups = -(-cols // group_size)
    scales = (rng.random((rows, groups, bits)) * 2).astype(np.float32)
    scales[0, 0, 0] = 0.0  # signed zeros must match too
    want = sc.bcq_dequantize(scales, planes, mask, group_size)
    packed = np.stack([pack_bits(p) for p in planes])
    results = []
    for level in available_simd_levels():
        sc.set_simd_level(level)
        for nontemporal in (False, True):
            results.append(core().dequantize(packed, pack_bits(mask), rows, cols, scales, group_size, nontemporal))
    sc.set_simd_level(best_simd_level())
    for got in results:
        assert_bit_equal(got, want)


@pytest.mark.parametrize("k", [0, 1, 5, 9, 13, 20, 32])
def test_trellis_transition_variants_agree(k, rng):
    x = 256
    key = ((rng.integers(0, 200, x).astype(np.uint32) << 16) | np.arange(x, dtype=np.uint32)).astype(np.uint32)
    key[rng.random(x) < 0.3] = (0x7FFF << 16) | 0xFFFF  # unreachable states
    hi = 1 << k
    u = rng.integers(0, hi, x, dtype=np.uint64) if k else np.zeros(x, np.uint64)
    v = rng.integers(0, hi, x, dtype=np.uint64) if k else np.zeros(x, np.uint64)
    scalar = core().trellis_transition(key, u, v, k, "scalar")
    brute = np.array(
        [min(int(key[o]) + (bin(int(u[o]) ^ int(v[n])).count("1") << 16) for o in range(x)) for n in range(x)]
    )
    assert np.array_equal(scalar, brute)
    if k <= 20:
        assert np.array_equal(core().trellis_transition(key, u, v, k, "hypercube"), scalar)
    if "avx2" in available_simd_levels():
        assert np.array_equal(core().trellis_transition(key, u, v, k, "avx2"), scalar)


def _plane_problem(rng, length, density):
    care = rng.random(length) < density
    target = rng.random(length) < 0.5
    return pack_bits(target)[None], pack_bits(care), target, care


def test_depth1_patches_are_minimal(rng):
    """Per slice, the patch count equals the brute-force minimum over all 2^n_in stored words."""
    n_in, n_out = 6, 16
    length = n_out * 300
    t_words, c_words, target, care = _plane_problem(rng, length, 0.6)
    code, patches = core().encode_planes(t_words, c_words, length, n_in, n_out, 1, 3, 64)
    rows = core().xor_network_rows(n_in, n_out, 1, 3)
    outputs = np.array([[bin(int(r) & x).count("1") & 1 for r in rows] for x in range(1 << n_in)], bool)
    per_slice = np.bincount(patches[0] // n_out, minlength=length // n_out)
    for s in range(length // n_out):
        sl = slice(s * n_out, (s + 1) * n_out)
        best = ((outputs != target[sl]) & care[sl]).sum(axis=1).min()
        assert per_slice[s] == best, s


def test_depth2_dynamic_program_is_optimal(rng):
    """The DP's total patch count equals the brute-force minimum over every word sequence."""
    n_in, n_out, slices = 3, 8, 5
    length = n_out * slices
    rows = core().xor_network_rows(n_in, n_out, 2, 11)
    outputs = np.array([[bin(int(r) & w).count("1") & 1 for r in rows] for w in range(1 << (2 * n_in))], bool)
    for trial in range(4):
        t_words, c_words, target, care = _plane_problem(rng, length, 0.6)
        _, patches = core().encode_planes(t_words, c_words, length, n_in, n_out, 2, 11, 64)
        best = None
        for seq in itertools.product(range(1 << n_in), repeat=slices):
            cost, prev = 0, 0
            for t, x in enumerate(seq):
                sl = slice(t * n_out, (t + 1) * n_out)
                cost += int(((outputs[x | (prev << n_in)] != target[sl]) & care[sl]).sum())
                prev = x
            best = cost if best is None else min(best, cost)
        assert len(patches[0]) == best, trial


@pytest.mark.parametrize("depth,n_in,n_out", [(1, 64, 700), (2, 8, 100), (2, 10, 64), (3, 5, 40)])
def test_encoder_output_identical_at_every_simd_level_and_thread_count(depth, n_in, n_out, rng):
    length = 100_000
    t_words, c_words, _, _ = _plane_problem(rng, length, 0.1)
    t_words = np.concatenate([t_words, _plane_problem(rng, length, 0.5)[0]])
    results = []
    for level, threads in [(level, 1) for level in available_simd_levels()] + [(available_simd_levels()[-1], 2)]:
        sc.set_simd_level(level)
        sc.set_num_threads(threads)
        code, patches = core().encode_planes(t_words, c_words, length, n_in, n_out, depth, 1, 1024)
        results.append((code, patches))
    sc.set_simd_level(best_simd_level())
    for code, patches in results[1:]:
        assert np.array_equal(code, results[0][0])
        assert all(np.array_equal(a, b) for a, b in zip(patches, results[0][1], strict=True))


def test_rice_round_trip_and_damage(rng):
    values = rng.geometric(0.02, 500).astype(np.uint64) - 1
    for k in (0, 3, 6, 12):
        data = core().rice_encode(values, k)
        assert len(data) * 8 >= core().rice_bits(values, k) > len(data) * 8 - 8
        assert np.array_equal(core().rice_decode(data, len(values), k, int(values.max())), values)
        with pytest.raises(ValueError):
            core().rice_decode(data[:-1], len(values), k, int(values.max()))
        with pytest.raises(ValueError):
            core().rice_decode(data + b"\x00", len(values), k, int(values.max()))
    with pytest.raises(ValueError, match="out-of-range"):
        core().rice_decode(core().rice_encode(np.array([40], np.uint64), 2), 1, 2, 39)


def test_care_rank_and_select_are_inverse(rng):
    length = 1000
    mask = rng.random(length) < 0.3
    words = pack_bits(mask)
    positions = np.flatnonzero(mask)[::3].astype(np.int64)
    ranks = core().care_rank(words, length, positions)
    assert np.array_equal(ranks, np.arange(0, mask.sum(), 3))
    assert np.array_equal(core().care_select(words, length, ranks), positions)
    with pytest.raises(ValueError, match="not a kept weight"):
        core().care_rank(words, length, np.array([np.flatnonzero(~mask)[0]], np.int64))
    with pytest.raises(ValueError, match="beyond"):
        core().care_select(words, length, np.array([int(mask.sum())], np.int64))


def test_bindings_reject_wrong_types():
    with pytest.raises(TypeError, match="dtype"):
        core().rice_encode(np.arange(3, dtype=np.int32), 1)
    with pytest.raises(ValueError, match="n_out"):
        core().check_network(8, 4, 2)
    with pytest.raises(ValueError, match="depth"):
        core().check_network(8, 100, 9)
    with pytest.raises(ValueError, match="n_in \\* depth"):
        core().check_network(11, 100, 2)


def _scatter_positions_reference(length, n_out, group_bands, seed):
    """Stream format 1's scatter layout, written independently from csrc/slice_layout.h."""
    mask64 = (1 << 64) - 1
    slices = -(-length // n_out)
    order = list(range(slices * n_out))
    full_bands = slices // 64
    first_band = 0
    while first_band < full_bands:
        bands = min(group_bands, full_bands - first_band)
        words = bands * n_out
        state = (seed ^ (words * 0xD1B54A32D192ED03)) & mask64

        def nxt():
            nonlocal state
            state = (state + 0x9E3779B97F4A7C15) & mask64
            z = state
            z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & mask64
            z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & mask64
            return z ^ (z >> 31)

        perm = list(range(words))
        for i in range(words - 1, 0, -1):
            j = nxt() % (i + 1)
            perm[i], perm[j] = perm[j], perm[i]
        rot = [nxt() & 63 for _ in range(words)]
        start = first_band * 64 * n_out
        for g in range(bands):
            for s in range(64):
                for j in range(n_out):
                    u = g * n_out + j
                    order[start + (g * 64 + s) * n_out + j] = start + 64 * perm[u] + ((s + rot[u]) & 63)
        first_band += bands
    tail_start, r = full_bands * 64 * n_out, slices - full_bands * 64
    for s in range(r):  # the last incomplete band is interleaved
        for j in range(n_out):
            order[tail_start + s * n_out + j] = tail_start + j * r + s
    return order


@pytest.mark.parametrize("length,n_out,group_bands", [(64 * 70 * 5 + 33, 70, 2), (64 * 64 * 3, 64, 3), (9000, 100, 1)])
def test_scatter_layout_is_the_format_1_definition(length, n_out, group_bands):
    got = core().layout_positions(length, 8, n_out, 1, 77, 64, "scatter", group_bands)
    assert got.tolist() == _scatter_positions_reference(length, n_out, group_bands, 77)
    assert core().layout_positions(length, 8, n_out, 1, 77, 64, "linear", 1).tolist() == list(range(len(got)))


@pytest.mark.parametrize(
    "n_in,n_out,depth,group_bands,chain",
    [
        (8, 88, 2, 2, 64),
        (64, 300, 1, 1, 64),
        (5, 13, 1, 4, 64),
        (3, 20, 3, 3, 64),
        # n_in = 8: the AVX-512 level decodes whole bands from the code bytes (GF2P8AFFINEQB), with
        # chains restarting at band starts and inside groups, at depths 1 and 2 (n_in * depth <= 20)
        (8, 20, 2, 3, 128),
        (8, 9, 2, 2, 64),
        (8, 100, 2, 1, 192),
        (8, 64, 1, 2, 64),
    ],
)
def test_scatter_decode_matches_definition(n_in, n_out, depth, group_bands, chain, rng, simd_level):
    """Bit-sliced band decoding placed by the scatter layout equals the GF(2) definition moved to the
    layout's positions."""
    length = 64 * n_out * 5 + 77
    n_slices = -(-length // n_out)
    code = pack_bits(rng.random(n_slices * n_in) < 0.5)
    got = core().decode_planes(
        code[None], [np.zeros(0, np.int64)], length, n_in, n_out, depth, 7, chain, "scatter", group_bands
    )
    slice_order = _window_reference(code, n_slices * n_out, n_in, n_out, depth, 7, chain)
    positions = core().layout_positions(length, n_in, n_out, depth, 7, chain, "scatter", group_bands)
    want = np.zeros(n_slices * n_out, bool)
    want[positions] = slice_order
    assert np.array_equal(unpack_bits(got[0], length), want[:length])
