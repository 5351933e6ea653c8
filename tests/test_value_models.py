"""Value models (bcq, bcq-offset, uniform), the fitting methods and the "none" mask format."""

from __future__ import annotations

import dataclasses
import json
import struct
import zlib

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import sparsecodec as sc
from sparsecodec.formats.stream import read_stream, write_stream
from sparsecodec.matmul import decode_row_set

from conftest import assert_bit_equal, best_simd_level, reference_decode, rtn_reference, scalar_reference

METHODS = ("greedy", "alternating", "uniform")


def relative_error(w, approx) -> float:
    return float(np.linalg.norm(w.astype(np.float64) - approx) / np.linalg.norm(w.astype(np.float64)))


@pytest.mark.parametrize("bits", [1, 2, 3, 4, 8])
@pytest.mark.parametrize("group_size", [None, 32])
@pytest.mark.parametrize("scale_dtype", ["float16", "float32"])
def test_uniform_is_round_to_nearest_on_an_asymmetric_grid(bits, group_size, scale_dtype, rng):
    w = (rng.standard_normal((24, 96)) * 0.05 + 0.01).astype(np.float32)
    enc = sc.encode(w, sparsity=0.0, bits=bits, method="uniform", group_size=group_size, scale_dtype=scale_dtype)
    assert enc.value_model == "uniform" and enc.mask.format_id == "none"
    got = sc.decode(enc)
    want = rtn_reference(w, bits, group_size, scale_dtype)
    if scale_dtype == "float16":  # every partial sum is exact: the decoded value is s (k - z) exactly
        assert np.array_equal(got, want.astype(np.float32))
    else:
        assert np.allclose(got, want, rtol=0, atol=1e-6 * np.abs(w).max())
    assert relative_error(w, got) == pytest.approx(relative_error(w, want), rel=1e-5, abs=1e-7)


@pytest.mark.parametrize("bits", range(1, 9))
@pytest.mark.parametrize("group_size", [None, 16])
def test_alternating_is_never_worse_than_greedy_or_uniform(bits, group_size, rng):
    w = (rng.standard_normal((16, 64)) + rng.normal(size=(16, 1))).astype(np.float32)  # rows with offsets
    mask = rng.random(w.shape) < 0.7
    errors = {}
    for method in METHODS:
        enc = sc.encode(w, mask=mask, bits=bits, method=method, group_size=group_size, scale_dtype="float16")
        errors[method] = enc.stats["quant_relative_error"]
    assert errors["alternating"] <= errors["uniform"] * (1 + 1e-9)
    assert errors["alternating"] <= errors["greedy"] * (1 + 1e-9)


def test_greedy_keeps_the_offset_free_model_of_format_1(rng):
    w = rng.standard_normal((8, 40)).astype(np.float32)
    enc = sc.encode(w, sparsity=0.5, bits=3, method="greedy")
    assert enc.value_model == "bcq" and enc.offsets is None
    assert "OFFS" not in read_stream(enc.to_bytes()).sections


def test_alternating_fits_an_offset(rng):
    w = (rng.standard_normal((4, 256)) * 0.1 + 3.0).astype(np.float32)  # far from zero-mean
    greedy = sc.encode(w, sparsity=0.0, bits=2, method="greedy").stats["quant_relative_error"]
    enc = sc.encode(w, sparsity=0.0, bits=2, method="alternating")
    assert enc.value_model in ("bcq-offset", "uniform")
    assert enc.stats["quant_relative_error"] < 0.6 * greedy  # 4 levels around the mean, not 2


MASKS = ("random", "rows", "none", "all_pruned")


def _mask(kind: str, shape, rng) -> np.ndarray:
    if kind == "random":
        return rng.random(shape) < 0.4
    if kind == "rows":
        m = np.ones(shape, dtype=bool)
        m[::2] = False
        return m
    if kind == "none":
        return np.ones(shape, dtype=bool)
    return np.zeros(shape, dtype=bool)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    method=st.sampled_from(METHODS),
    bits=st.integers(1, 8),
    mask_kind=st.sampled_from(MASKS),
    depth=st.sampled_from([1, 2]),
    rows=st.integers(1, 24),
    cols=st.integers(1, 130),
    group=st.sampled_from([None, 8, 33]),
    scale_dtype=st.sampled_from(["float16", "float32"]),
    seed=st.integers(0, 2**16),
)
def test_round_trip_is_bit_exact_for_every_method_and_mask(
    method, bits, mask_kind, depth, rows, cols, group, scale_dtype, seed
):
    rng = np.random.default_rng(seed)
    w = (rng.standard_normal((rows, cols)) + rng.normal()).astype(np.float32)
    mask = _mask(mask_kind, w.shape, rng)
    kwargs = dict(group_size=group, method=method, scale_dtype=scale_dtype)
    enc = sc.encode(w, mask=mask, bits=bits, depth=depth, **kwargs)
    decoded = sc.decode(enc)
    assert_bit_equal(decoded, reference_decode(w, mask, bits, **kwargs))
    again = sc.EncodedWeight.from_bytes(enc.to_bytes())
    assert again.value_model == enc.value_model and again.quant_method == method
    assert_bit_equal(sc.decode(again), decoded)
    assert again.to_bytes() == enc.to_bytes()


@pytest.mark.parametrize("method", METHODS)
def test_offsets_in_every_kernel_and_simd_level(method, rng):
    w = (rng.standard_normal((70, 136)) * 0.3 + 0.8).astype(np.float32)
    x = rng.standard_normal((37, 136)).astype(np.float32)
    detected = best_simd_level()
    for sparsity, bits in [(0.0, 4), (0.5, 3), (0.9, 1), (0.0, 8)]:
        enc = sc.encode(w, sparsity=sparsity, bits=bits, method=method, group_size=8 * 17)
        dense = sc.decode(enc).astype(np.float64)
        bound = np.abs(enc.scales).sum(-1) + (0 if enc.offsets is None else np.abs(enc.offsets))
        for batch in (1, 5, 37):
            xb = x[:batch]
            scale = np.abs(xb).astype(np.float64) @ np.maximum(np.abs(dense), bound.max()).T
            for strategy in ("sparse", "lut", "lut_stream", "dense"):
                got = sc.matmul(xb, enc, strategy=strategy)
                assert (np.abs(got - xb @ dense.T) <= 2e-6 * scale + 1e-30).all(), (strategy, batch)
                if strategy != "dense" and detected != "scalar":
                    ref = scalar_reference(lambda: sc.matmul(xb, enc, strategy=strategy))  # noqa: B023
                    assert np.array_equal(ref.view(np.uint32), got.view(np.uint32)), (strategy, batch)
        rows = np.array([3, 0, 69, 3, 17])
        assert np.array_equal(decode_row_set(enc, rows), sc.decode(enc)[rows])


def test_no_mask_stores_nothing_and_costs_only_values_and_scales(rng):
    w = rng.standard_normal((64, 512)).astype(np.float32)
    enc = sc.encode(w, sparsity=0.0, bits=4, method="uniform", group_size=128, scale_dtype="float16")
    s = enc.stats
    assert s["mask_format"] == "none" and s["mask_bpw"] == 0.0
    assert s["total_bpw"] <= 4.3
    per_row = sc.encode(w, sparsity=0.0, bits=4, scale_dtype="float16")
    assert per_row.stats["total_bpw"] <= 4 + per_row.stats["scale_bpw"] + per_row.stats["patch_bpw"] + 1e-12
    assert per_row.stats["patch_bpw"] == 0.0
    # An all-True mask picks it too; an explicit bitmap is still available.
    assert sc.encode(w, mask=np.ones(w.shape, bool), bits=2).mask.format_id == "none"
    assert sc.encode(w, mask=np.ones(w.shape, bool), bits=2, mask_format="bitmap").mask.format_id == "bitmap"
    with pytest.raises(ValueError, match="keeps every weight"):
        sc.encode(w, sparsity=0.5, mask_format="none")


def _rewrite_header(stream: bytes, edit) -> bytes:
    parsed = read_stream(stream)
    header = json.loads(json.dumps(parsed.header))
    edit(header)
    return write_stream(parsed.method, header, list(parsed.sections.items()))


def test_unknown_value_model_is_a_stream_error_but_unknown_method_still_decodes(rng):
    w = rng.standard_normal((6, 40)).astype(np.float32)
    enc = sc.encode(w, sparsity=0.3, bits=3, method="uniform")
    data = enc.to_bytes()

    def rename_model(h):
        h["quant"]["value_model"] = "lattice"

    with pytest.raises(sc.StreamError, match="unknown value model 'lattice'"):
        sc.EncodedWeight.from_bytes(_rewrite_header(data, rename_model))

    def rename_method(h):
        h["quant"]["method"] = "some-future-fit"

    other = sc.EncodedWeight.from_bytes(_rewrite_header(data, rename_method))
    assert other.quant_method == "some-future-fit"
    assert np.array_equal(sc.decode(other), sc.decode(enc))


def test_non_finite_offsets_and_steps_are_refused(rng):
    w = rng.standard_normal((6, 40)).astype(np.float32)
    enc = sc.encode(w, sparsity=0.0, bits=2, method="alternating")
    assert enc.value_model == "bcq-offset" or enc.value_model == "uniform"
    enc = sc.encode(w + 1, sparsity=0.0, bits=2, method="alternating", scale_dtype="float32")
    if enc.offsets is not None:
        bad = dataclasses.replace(enc, offsets=np.full_like(enc.offsets, np.inf), value_params=None)
        with pytest.raises(ValueError, match="offsets must be finite"):
            sc.decode(bad)
    # A stream whose step section holds NaN: rewritten with a valid CRC, still refused.
    u = sc.encode(w, sparsity=0.0, bits=2, method="uniform", scale_dtype="float32").to_bytes()
    parsed = read_stream(u)
    sections = dict(parsed.sections)
    sections["STEP"] = np.full(len(sections["STEP"]) // 4, np.nan, "<f4").tobytes()
    with pytest.raises(sc.StreamError, match="non-finite"):
        sc.EncodedWeight.from_bytes(write_stream(parsed.method, parsed.header, list(sections.items())))


def test_bad_names_are_value_errors_that_name_the_choice(rng):
    w = rng.standard_normal((4, 16)).astype(np.float32)
    with pytest.raises(ValueError, match="method"):
        sc.encode(w, method="hqq")
    with pytest.raises(ValueError, match="mask_format"):
        sc.encode(w, mask_format="csr")
    with pytest.raises(ValueError, match="method"):
        sc.SQConfig(method="gptq-ish")
    with pytest.raises(ValueError, match="unknown value model"):
        sc.quantizers.value_model("lattice")


def test_format_1_header_must_not_name_a_value_model(rng):
    """A version-1 stream is read with the rules of version 1: value_model is an unknown field there."""
    w = rng.standard_normal((4, 16)).astype(np.float32)
    current = read_stream(sc.encode(w, sparsity=0.5, bits=2).to_bytes())
    # the container as format 1 laid it out: sections back to back, without alignment padding
    header = json.dumps(current.header).encode()
    body = struct.pack("<I", len(current.sections))
    for tag, payload in current.sections.items():
        body += struct.pack("<4sQ", tag.encode(), len(payload)) + bytes(payload)
    data = struct.pack("<4sHHQI", b"SPCX", 1, 1, 20 + len(header) + len(body) + 4, len(header)) + header + body
    data += struct.pack("<I", zlib.crc32(data) & 0xFFFFFFFF)
    with pytest.raises(sc.StreamError, match="unknown fields"):
        sc.EncodedWeight.from_bytes(bytes(data))
