"""The int8 matmul strategies: the int8-table kernel ("lut_int8") within its documented bound of the
exact product and exact when its tables are; the int8-tile kernel ("int8_tiles") equal to a numpy
model of its integer arithmetic; both the same bits on every SIMD level."""

from __future__ import annotations

import numpy as np
import pytest

import sparsecodec as sc
from sparsecodec.matmul import cache_nbytes, clear_caches, lut_int8_supported

from conftest import available_simd_levels


def _bound(enc, x: np.ndarray) -> np.ndarray:
    """The documented error bound of every output, (batch, rows): per scale group and lane,
    s * (columns / 4) * (1.5 * sum |alpha| + 0.5 * |beta|), s = max |4-column subset sum| / 127."""
    rows, cols = enc.shape
    gs = min(enc.group_size, cols)
    groups = -(-cols // gs)
    pad = -(-cols // 32) * 32
    xp = np.zeros((x.shape[0], pad))
    xp[:, :cols] = x
    quads = xp.reshape(x.shape[0], -1, 4)
    peak = np.maximum(np.clip(quads, 0, None).sum(-1), -np.clip(quads, None, 0).sum(-1))  # (batch, quads)
    alpha = np.abs(enc.scales).sum(-1)  # (rows, groups)
    beta = np.zeros_like(alpha) if enc.offsets is None else np.abs(enc.offsets)
    bound = np.zeros((x.shape[0], rows))
    for g in range(groups):
        q0, q1 = g * gs // 4, min(pad, (g + 1) * gs) // 4 if g < groups - 1 else pad // 4
        s = peak[:, q0:q1].max(axis=1) / 127.0
        bound += np.outer(s * (q1 - q0), np.ones(rows)) * (1.5 * alpha[:, g] + 0.5 * beta[:, g])[None, :]
    return bound


CASES = [
    ((37, 100), 0.5, 2, {}),
    ((50, 96), 0.0, 4, {"group_size": 32}),
    ((64, 256), 0.5, 3, {"group_size": 128, "method": "alternating"}),
    ((17, 33), 0.9, 1, {}),
    ((1, 5), 0.0, 8, {}),
    ((90, 200), 0.7, 5, {"mask_format": "lowrank", "rank": 4, "tile": (32, 64)}),
    ((33, 130), 0.5, 6, {"group_size": 64, "method": "uniform"}),
    ((16, 64), 0.3, 7, {"method": "alternating"}),
    # two tiles of 64 rows and a ragged third, offsets on a uniform grid, a low-rank mask
    ((150, 160), 0.5, 4, {"group_size": 32, "method": "uniform"}),
    ((70, 96), 0.6, 2, {"mask_format": "lowrank", "rank": 3, "tile": (32, 32)}),
    # every weight kept (the cached blocks hold no mask) and a ragged last block of 4 columns
    ((70, 100), 0.0, 3, {}),
    # float16 scales, whose alphas the cache holds as float16: without offsets, with float16 offsets,
    # with a uniform grid's offsets (not float16 values), and scaled into float16's subnormals
    ((48, 256), 0.5, 4, {"group_size": 128, "scale_dtype": "float16"}),
    ((40, 96), 0.0, 3, {"group_size": 32, "method": "alternating", "scale_dtype": "float16"}),
    ((32, 128), 0.5, 4, {"group_size": 64, "method": "uniform", "scale_dtype": "float16"}),
    ((20, 64), 0.9, 1, {"scale_dtype": "float16", "weight_scale": 1e-6}),
]


@pytest.fixture(scope="module")
def encoded():
    rng = np.random.default_rng(5)
    out = []
    for shape, sparsity, bits, kwargs in CASES:
        kwargs = dict(kwargs)
        weight_scale = np.float32(kwargs.pop("weight_scale", 1.0))
        w = (rng.standard_normal(shape).astype(np.float32) + np.float32(0.3)) * weight_scale
        out.append(sc.encode(w, sparsity=sparsity, bits=bits, **kwargs))
    return out


@pytest.mark.parametrize("batch", [1, 2, 3, 7, 9, 12, 13, 14, 17, 64, 130, 512])  # every remainder of 8 lanes
def test_within_the_documented_bound_and_equal_on_every_simd_level(encoded, batch):
    rng = np.random.default_rng(batch)
    levels = available_simd_levels()
    try:
        for enc in encoded:
            x = rng.standard_normal((batch, enc.shape[1])).astype(np.float32)
            want = x.astype(np.float64) @ sc.decode(enc).astype(np.float64).T
            results = {}
            for level in levels:
                sc.set_simd_level(level)
                results[level] = sc.matmul(x, enc, strategy="lut_int8")
            got = results["scalar"]
            assert got.shape == (batch, enc.shape[0]) and got.dtype == np.float32
            slack = 1e-5 * (np.abs(x).astype(np.float64) @ np.abs(sc.decode(enc)).T.astype(np.float64)) + 1e-6
            assert (np.abs(got - want) <= _bound(enc, x) + slack).all(), enc
            for level in levels[1:]:
                assert np.array_equal(results[level].view(np.uint32), got.view(np.uint32)), (enc, level)
    finally:
        sc.set_simd_level(levels[-1])


def test_exact_when_every_table_entry_is_an_integer(encoded):
    """x with integer entries and one 4-column sum of 127 in every scale group makes the table scale
    exactly 1: then only float32 rounding separates the result from the exact product."""
    rng = np.random.default_rng(0)
    for enc in encoded:
        rows, cols = enc.shape
        gs = min(enc.group_size, cols)
        x = rng.integers(-7, 8, size=(3, cols)).astype(np.float32)  # |4-sums| <= 28
        x[:, ::gs] = 127.0  # the first column of each group: its quad's positive sum is 127 + at most 21
        x[:, 1::gs] = x[:, 2::gs] = x[:, 3::gs] = 0.0
        want = x.astype(np.float64) @ sc.decode(enc).astype(np.float64).T
        got = sc.matmul(x, enc, strategy="lut_int8")
        scale = np.abs(x).astype(np.float64) @ np.abs(sc.decode(enc)).T.astype(np.float64) + 1e-30
        assert (np.abs(got - want) <= 1e-5 * scale).all(), enc


def test_close_to_the_exact_product_on_gaussian_inputs():
    rng = np.random.default_rng(1)
    w = rng.standard_normal((256, 512)).astype(np.float32)
    enc = sc.encode(w, sparsity=0.5, bits=4, group_size=128)
    x = rng.standard_normal((8, 512)).astype(np.float32)
    exact, fast = sc.matmul(x, enc, strategy="lut"), sc.matmul(x, enc, strategy="lut_int8")
    assert np.linalg.norm(fast - exact) / np.linalg.norm(exact) < 0.03


def test_cache_is_counted_dropped_and_precision_chooses(encoded):
    enc = encoded[0]
    clear_caches(enc)
    assert cache_nbytes(enc) == 0
    x = np.ones((1, enc.shape[1]), np.float32)
    sc.matmul(x, enc, strategy="lut_int8")
    rows, cols = enc.shape
    bits_bytes = (-(-rows // 16) * 16) * (-(-cols // 32) * 4) * (1 + enc.bits)
    assert cache_nbytes(enc) >= bits_bytes
    clear_caches(enc)
    assert cache_nbytes(enc) == 0
    with pytest.raises(ValueError, match="strategy"):
        sc.matmul(x, enc, strategy="auto_int4")


def _is_float16(values) -> bool:
    v = np.asarray(values, np.float32)
    return bool((v.astype(np.float16).astype(np.float32) == v).all())


def test_int8_table_cache_is_one_stream_without_a_mask_when_every_weight_is_kept_with_float16_scales(encoded):
    # per row block of 16 rows: its 32-column blocks of (mask unless all kept) + q planes, 16 words
    # each, and per scale group q rows of 16 alphas, float16 when all of them are float16 values, and
    # with offsets a row of 16 float32 betas, padded to whole 16-word lines
    checked_all_kept = checked_half = False
    for enc in encoded:
        rows, cols = enc.shape
        clear_caches(enc)
        sc.matmul(np.ones((1, cols), np.float32), enc, strategy="lut_int8")
        all_kept = enc.mask.kept == rows * cols
        half = _is_float16(enc.scales)
        checked_all_kept |= all_kept
        checked_half |= half
        groups = -(-cols // min(enc.group_size, cols))
        planes = enc.bits + (0 if all_kept else 1)
        used = enc.bits * (8 if half else 16) + (16 if enc.offsets is not None else 0)
        scale_words = -(-used // 16) * 16
        words = -(-rows // 16) * 16 * (-(-cols // 32) * planes) + -(-rows // 16) * groups * scale_words
        assert cache_nbytes(enc) == 4 * words, enc
        clear_caches(enc)
    assert checked_all_kept and checked_half


def test_unsupported_groups_are_refused_clearly():
    w = np.random.default_rng(2).standard_normal((8, 64)).astype(np.float32)
    enc = sc.encode(w, sparsity=0.5, bits=2, group_size=16)
    assert not lut_int8_supported(enc)
    with pytest.raises(ValueError, match="32 columns"):
        sc.matmul(np.ones((1, 64), np.float32), enc, strategy="lut_int8")


def _int8_tiles_model(enc, x: np.ndarray) -> np.ndarray:
    """int8_tiles' documented arithmetic in numpy: int8 weights and uint8 x around 128 per row and scale
    group, integer products, then y = y + (float(acc - 128 V) * s_x) * s_w per group in float32."""
    rows, cols = enc.shape
    q = enc.bits
    gs = min(enc.group_size, cols)
    groups = -(-cols // gs)
    alpha = enc.scales.astype(np.float32)  # (rows, groups, q)
    patterns = np.arange(1 << q)
    signs = np.where((patterns[:, None] >> np.arange(q)) & 1, np.float32(1), np.float32(-1))  # (2^q, q)
    values = signs[None, None, :, 0] * alpha[:, :, None, 0]
    for p in range(1, q):
        values = values + signs[None, None, :, p] * alpha[:, :, None, p]
    if enc.offsets is not None:
        values = values + enc.offsets.astype(np.float32)[:, :, None]
    peak = np.abs(values).max(axis=2)  # (rows, groups)
    unit = np.abs(alpha[:, :, 0])
    with np.errstate(divide="ignore", invalid="ignore"):
        n = values / unit[:, :, None]
    rounded = np.rint(n)
    grid = (unit > 0) & (
        (np.abs(n - rounded) <= np.float32(1e-4) * np.maximum(1, np.abs(rounded))) & (np.abs(rounded) <= 127)
    ).all(axis=2)
    step = np.where(grid, unit, peak / np.float32(127)).astype(np.float32)
    with np.errstate(divide="ignore", invalid="ignore"):
        inv = np.where(step > 0, np.float32(1) / step, 0).astype(np.float32)
        table = np.where(grid[:, :, None], np.rint(n), np.rint(values * inv[:, :, None]))
    planes = enc.decode_planes()  # (q, rows, cols) bool: each weight's bit pattern
    codes = sum(planes[p].astype(np.int64) << p for p in range(q))
    keep = enc.mask.to_dense()
    group_of = np.arange(cols) // gs
    v = np.take_along_axis(table[:, group_of, :], codes[:, :, None], axis=2)[:, :, 0].astype(np.int64) * keep
    y = np.zeros((x.shape[0], rows), np.float32)
    for g in range(groups):
        cs = slice(g * gs, min(cols, (g + 1) * gs))
        xp = np.abs(x[:, cs]).max(axis=1).astype(np.float32)
        x_inv = np.where(xp > 0, np.float32(127) / np.where(xp > 0, xp, 1), 0).astype(np.float32)
        xq = np.rint(x[:, cs] * x_inv[:, None]).astype(np.int64) + 128
        acc = xq @ v[:, cs].T - 128 * v[:, cs].sum(axis=1)[None, :]
        t = acc.astype(np.float32) * (xp / np.float32(127)).astype(np.float32)[:, None]
        t = (t * step[None, :, g]).astype(np.float32)
        y = t if g == 0 else (y + t).astype(np.float32)
    return y


@pytest.mark.parametrize("batch", [1, 5, 6, 7, 13, 64, 130, 300])
def test_int8_tiles_equal_their_integer_model_on_every_simd_level(encoded, batch):
    rng = np.random.default_rng(100 + batch)
    levels = available_simd_levels()
    try:
        for enc in encoded:
            if enc.bits > 4:
                continue
            x = rng.standard_normal((batch, enc.shape[1])).astype(np.float32)
            want = _int8_tiles_model(enc, x)
            for level in levels:
                sc.set_simd_level(level)
                got = sc.matmul(x, enc, strategy="int8_tiles")
                assert np.array_equal(got.view(np.uint32), want.view(np.uint32)), (enc, level)
    finally:
        sc.set_simd_level(levels[-1])


@pytest.mark.parametrize("strategy", ["int8_tiles", "lut_int8"])
def test_int8_strategies_treat_non_finite_inputs_alike_on_every_simd_level(encoded, strategy):
    """x quantisation (or its tables' rounding) ignores a NaN for the group's peak and maps it to
    -127; an infinity makes the group's scale infinite. Vector and scalar code must agree on those
    too, and on negative zeros."""
    levels = available_simd_levels()
    enc = encoded[1]  # 50 x 96, groups of 32
    x = np.random.default_rng(3).standard_normal((9, 96)).astype(np.float32)
    x[0, 5], x[1, 40], x[2, 70], x[3, :32], x[4, 1:3] = np.nan, np.inf, -np.inf, 0.0, -0.0
    try:
        outs = []
        for level in levels:
            sc.set_simd_level(level)
            outs.append(sc.matmul(x, enc, strategy=strategy).view(np.uint32))
        assert all(np.array_equal(o, outs[0]) for o in outs)
        finite = np.isfinite(outs[0].view(np.float32))
        assert finite[4:].all() and finite[3].all()  # untouched rows, and a row with an all-zero group
    finally:
        sc.set_simd_level(levels[-1])


def test_int8_tiles_refuse_more_than_four_bits(encoded):
    enc = next(e for e in encoded if e.bits > 4)
    with pytest.raises(ValueError, match="at most 4 bits"):
        sc.matmul(np.ones((2, enc.shape[1]), np.float32), enc, strategy="int8_tiles")


def test_auto_int8_picks_only_strategies_that_run(encoded):
    from sparsecodec.matmul import candidate_strategies, choose_strategy

    levels = available_simd_levels()
    try:
        for level in levels:
            sc.set_simd_level(level)
            for enc in encoded:
                for batch in (1, 8, 64, 512):
                    assert choose_strategy(enc, batch) in candidate_strategies(enc, "auto")
                    assert choose_strategy(enc, batch, "auto_int8") in candidate_strategies(enc, "auto_int8")
                int8 = {"lut_int8", "int8_tiles"} & set(candidate_strategies(enc, "auto_int8"))
                # the int8 kernels are vector code on AVX-512 only; below it auto_int8 picks as auto does
                if level == "avx512":
                    assert int8 == ({"lut_int8", "int8_tiles"} if enc.bits <= 4 else {"lut_int8"})
                else:
                    assert not int8
                assert not {"lut_int8", "int8_tiles"} & set(candidate_strategies(enc, "auto"))
    finally:
        sc.set_simd_level(levels[-1])


def test_auto_int8_choice_follows_the_simd_level(encoded):
    """A choice remembered at one level is not reused at another (the int8 candidates differ)."""
    from sparsecodec.matmul import choose_strategy

    levels = available_simd_levels()
    if "avx512" not in levels:
        pytest.skip("needs an AVX-512 CPU")
    enc = next(e for e in encoded if e.bits <= 4)
    try:
        sc.set_simd_level("avx512")
        picks = {choose_strategy(enc, batch, "auto_int8") for batch in (1, 512)}
        assert picks & {"lut_int8", "int8_tiles"}
        sc.set_simd_level("avx2")
        assert not {choose_strategy(enc, batch, "auto_int8") for batch in (1, 512)} & {"lut_int8", "int8_tiles"}
    finally:
        sc.set_simd_level(levels[-1])
