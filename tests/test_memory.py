"""Run-time memory: what an encoded weight and its matmul caches hold, and the budget of "auto"."""

from __future__ import annotations

import dataclasses
import importlib
import pickle

import numpy as np
import pytest

import sparsecodec as sc
from sparsecodec.formats.xor_codec import native_weight
from sparsecodec.matmul import AUTO_MEMORY_BUDGET, cache_nbytes, candidate_strategies, run_time_nbytes

BATCHES = (1, 3, 8, 64, 200)
mm = importlib.import_module("sparsecodec.matmul")  # the module, not sc.matmul the function


def _weight(shape=(192, 256), seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def _arrays_nbytes(enc):
    arrays = [enc.code, enc.scales, *enc.patches, *(enc.value_params or {}).values()]
    if enc.offsets is not None:
        arrays.append(enc.offsets)
    return sum(a.nbytes for a in arrays)


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(sparsity=0.9, bits=1),
        dict(sparsity=0.5, bits=2),
        dict(sparsity=0.5, bits=4, group_size=64, scale_dtype="float16"),
        dict(sparsity=0.0, bits=4, group_size=64, scale_dtype="float16"),
        dict(sparsity=0.5, bits=3, method="uniform"),  # offsets and value-model parameters
        dict(sparsity=0.0, bits=8, group_size=64),
        dict(sparsity=0.6, bits=2, mask_format="lowrank", rank=4, tile=(32, 64)),
    ],
)
def test_auto_keeps_the_weight_and_its_caches_within_the_budget(kwargs):
    enc = sc.encode(_weight(), **kwargs)
    x = np.random.default_rng(1).standard_normal((max(BATCHES), enc.shape[1])).astype(np.float32)
    w = sc.decode(enc)
    for batch in BATCHES:  # every batch size may choose another strategy and build its cache
        np.testing.assert_allclose(sc.matmul(x[:batch], enc), x[:batch] @ w.T, rtol=1e-4, atol=1e-4)
    # a weight past the budget on its own (8 bits, nothing pruned) gets no cache at all
    assert run_time_nbytes(enc) <= max(AUTO_MEMORY_BUDGET * enc.size, mm.AUTO_MEMORY_FLOOR, enc.nbytes)
    assert "lut_stream" in candidate_strategies(enc) and "dense" in candidate_strategies(enc)


def test_the_budget_admits_the_decoded_planes_first_then_the_sparse_form(monkeypatch):
    enc = sc.encode(_weight(), sparsity=0.9, bits=1)
    assert {"lut", "sparse"} <= set(candidate_strategies(enc))  # both fit at 0.9 sparsity, 1 bit
    lut_only = (enc.nbytes + mm._lut_cache_nbytes(enc) + 1) / enc.size  # the planes fit, the sparse form not
    monkeypatch.setattr(mm, "AUTO_MEMORY_FLOOR", 0)
    monkeypatch.setattr(mm, "AUTO_MEMORY_BUDGET", lut_only)
    assert candidate_strategies(enc) == ["dense", "lut", "lut_stream"]
    monkeypatch.setattr(mm, "AUTO_MEMORY_BUDGET", 0.0)  # nothing fits: only what caches nothing
    assert candidate_strategies(enc) == ["dense", "lut_stream"]
    # the fast mode is not bounded
    assert {"sparse", "lut"} <= set(candidate_strategies(enc, "auto_int8"))


@pytest.mark.parametrize("strategy", ["lut", "sparse"])
@pytest.mark.parametrize(
    "kwargs",
    [
        dict(sparsity=0.9, bits=1),
        dict(sparsity=0.5, bits=4, group_size=64),
        dict(sparsity=0.0, bits=2),
        dict(sparsity=0.5, bits=8, cols=300),  # column and bits overflow 16 bits: the sparse form is 3 B/entry
        dict(sparsity=0.6, bits=2, mask_format="lowrank", rank=4, tile=(32, 64)),
    ],
)
def test_predicted_cache_sizes_are_the_built_ones(strategy, kwargs):
    kwargs = dict(kwargs)
    enc = sc.encode(_weight((96, kwargs.pop("cols", 256))), **kwargs)
    predicted = mm._BUDGETED_CACHES[strategy](enc)
    sc.matmul(np.ones((1, enc.shape[1]), np.float32), enc, strategy=strategy)
    assert cache_nbytes(enc) == predicted


def test_decoded_planes_read_a_bitmap_mask_in_place_and_hold_a_lowrank_one():
    x = np.random.default_rng(2).standard_normal((5, 256)).astype(np.float32)
    words = (96 * 256 + 63) // 64 + 2
    for fmt, extra, kw in (("bitmap", 0, {}), ("lowrank", 1, dict(rank=4, tile=(32, 64)))):
        enc = sc.encode(_weight((96, 256)), sparsity=0.6, bits=3, mask_format=fmt, **kw)
        y = sc.matmul(x, enc, strategy="lut")
        assert cache_nbytes(enc) == 8 * words * (3 + extra)
        np.testing.assert_allclose(y, x @ sc.decode(enc).T, rtol=1e-4, atol=1e-4)


def test_weight_nbytes_counts_what_it_holds():
    enc = sc.encode(_weight(), sparsity=0.5, bits=4, group_size=64, scale_dtype="float16")
    assert enc.nbytes == _arrays_nbytes(enc) + enc.mask.bits().nbytes
    none = sc.encode(_weight(), sparsity=0.0, bits=2)
    sc.matmul(np.ones((1, 256), np.float32), none, strategy="lut_stream")
    ones = 8 * ((none.size + 63) // 64)  # the kernels read an all-kept mask as ones
    assert none.nbytes == _arrays_nbytes(none) + ones + none._native.network_nbytes > _arrays_nbytes(none) + ones
    assert run_time_nbytes(none) == none.nbytes  # streaming caches nothing


def test_patch_positions_are_held_compactly_and_read_in_place():
    enc = sc.encode(_weight(), sparsity=0.5, bits=4, group_size=64)
    assert all(p.dtype == np.uint32 for p in enc.patches) and sum(map(len, enc.patches)) > 0
    loaded = sc.EncodedWeight.from_bytes(enc.to_bytes())
    assert all(p.dtype == np.uint32 for p in loaded.patches)
    assert pickle.loads(pickle.dumps(enc)).patches[0].dtype == np.uint32
    w = sc.decode(enc)
    assert np.array_equal(sc.decode(loaded), w)
    # int64 positions (a caller's own) decode the same
    wide = sc.EncodedWeight.from_bytes(enc.to_bytes())
    object.__setattr__(wide, "patches", tuple(p.astype(np.int64) for p in enc.patches))  # past the compaction
    assert np.array_equal(sc.decode(wide), w)
    x = np.ones((2, 256), np.float32)
    assert np.array_equal(sc.matmul(x, wide, strategy="lut_stream"), sc.matmul(x, enc, strategy="lut_stream"))


def test_bad_patch_arrays_are_refused_clearly():
    enc = sc.encode(_weight(), sparsity=0.5, bits=2)
    floats = dataclasses.replace(enc, patches=(np.array([1.0, 2.0]), enc.patches[1]))
    with pytest.raises(TypeError, match="patches must have dtype uint32 or int64, got float64"):
        sc.decode(floats)
    outside = dataclasses.replace(enc, patches=(np.array([enc.size], np.int64), enc.patches[1]))
    assert outside.patches[0].dtype == np.uint32  # integers that fit are held as uint32
    with pytest.raises(ValueError, match="strictly ascending and inside the plane"):
        sc.decode(outside)


def test_a_tiny_weight_keeps_its_caches_under_the_budget_floor():
    # read from its stream, whose header alone passes a byte per weight
    enc = sc.EncodedWeight.from_bytes(sc.encode(_weight((6, 36)), sparsity=0.5, bits=2).to_bytes())
    assert enc.nbytes > AUTO_MEMORY_BUDGET * enc.size
    assert "lut" in candidate_strategies(enc) and "sparse" in candidate_strategies(enc)


def test_a_layer_reports_its_stream_its_parsed_weight_and_its_caches():
    torch = pytest.importorskip("torch")
    from sparsecodec.nn import SQLinear

    layer = SQLinear.from_linear(torch.nn.Linear(256, 96), sc.SQConfig(sparsity=0.5, bits=2)).eval()
    enc = layer.encoded_weights()[0]
    x = torch.ones(3, 256)
    with torch.inference_mode():
        layer.strategy = "lut_stream"  # caches nothing; builds the kernels' view of the weight
        layer(x)
        before = layer.memory_nbytes()
        # the parsed weight views the layer's buffer: the buffer is counted once, inside enc.nbytes
        assert enc.stream_span == (layer.encoded.data_ptr(), layer.encoded.numel())
        assert before == enc.nbytes and cache_nbytes(enc) == 0
        owned = enc.scales.nbytes + sum(p.nbytes for p in enc.patches)
        assert enc.nbytes == layer.encoded.numel() + owned + native_weight(enc).network_nbytes
        layer.strategy = "lut"
        layer(x)
    assert layer.memory_nbytes() == before + cache_nbytes(enc) and cache_nbytes(enc) > 0
    copied = pickle.loads(pickle.dumps(enc))  # holds copies of its own: counted array by array
    assert copied.stream_span is None and copied.nbytes == _arrays_nbytes(copied) + copied.mask.nbytes


def test_a_stream_is_read_in_place_when_its_buffer_allows():
    enc = sc.encode(_weight((50, 77)), sparsity=0.5, bits=3)
    data = enc.to_bytes()
    aligned = np.frombuffer(bytearray(data), np.uint8)  # a bytearray's buffer is 8-byte aligned
    viewing = sc.EncodedWeight.from_bytes(aligned, in_place=True)
    for arr in (viewing.code, viewing.mask.bits()):
        assert np.shares_memory(arr, aligned) and not arr.flags.writeable
    assert viewing.stream_nbytes == len(data) and viewing.stream_span == (aligned.ctypes.data, len(data))
    assert viewing.nbytes == len(data) + _arrays_nbytes(viewing) - viewing.code.nbytes
    # a buffer that may change is copied unless in_place says it will not; bytes never change
    copied = sc.EncodedWeight.from_bytes(aligned)
    assert not np.shares_memory(copied.code, aligned) and copied.stream_nbytes == len(data)
    from_bytes = sc.EncodedWeight.from_bytes(data)
    assert from_bytes.stream_nbytes == len(data) and not from_bytes.code.flags.owndata
    shifted = np.zeros(len(data) + 1, np.uint8)[1:]  # misaligned: the words are copied
    shifted[:] = aligned
    copying = sc.EncodedWeight.from_bytes(shifted, in_place=True)
    assert not np.shares_memory(copying.code, shifted) and copying.stream_nbytes == 0
    assert copying.nbytes == _arrays_nbytes(copying) + copying.mask.nbytes
    for other in (viewing, copied, from_bytes, copying):
        assert np.array_equal(sc.decode(other).view(np.uint32), sc.decode(enc).view(np.uint32))
        assert other.to_bytes() == data
    # a copy of the dataclass that still views the buffer still counts it
    replaced = dataclasses.replace(viewing, quant_error=None)  # without the native tables built above
    assert replaced.stream_span == viewing.stream_span
    assert replaced.nbytes == viewing.nbytes - native_weight(viewing).network_nbytes


def test_a_layer_made_under_inference_mode_still_reads_its_buffer_in_place():
    torch = pytest.importorskip("torch")
    from sparsecodec.nn import SQLinear

    with torch.inference_mode():
        layer = SQLinear.from_linear(torch.nn.Linear(64, 32), sc.SQConfig(sparsity=0.5, bits=2))
        layer(torch.ones(1, 64))
        # an ordinary tensor, whose version counter tells of writes: read in place
        assert not layer.encoded.is_inference()
        enc = layer.encoded_weights()[0]
        assert enc.stream_span == (layer.encoded.data_ptr(), layer.encoded.numel())
        assert layer.memory_nbytes() == run_time_nbytes(enc)
        # an inference tensor (no version counter) given as the buffer is parsed from a copy
        layer.encoded = layer.encoded.clone()
        assert layer.encoded.is_inference()
        layer(torch.ones(1, 64))
        enc = layer.encoded_weights()[0]
        assert enc.stream_span is not None and enc.stream_span[0] != layer.encoded.data_ptr()
        assert layer.memory_nbytes() == layer.encoded.numel() + run_time_nbytes(enc)


def test_a_layer_buffer_written_in_place_is_checked_again():
    torch = pytest.importorskip("torch")
    from sparsecodec.nn import SQLinear

    layer = SQLinear.from_linear(torch.nn.Linear(64, 32), sc.SQConfig(sparsity=0.5, bits=2)).eval()
    x = torch.ones(2, 64)
    layer(x)
    code_at = layer.encoded_weights()[0].code.ctypes.data - layer.encoded.data_ptr()
    assert 0 < code_at < layer.encoded.numel()  # the planes are read inside the buffer
    with torch.no_grad():
        layer.encoded[code_at] ^= 1  # damage the planes in place; the CRC field is unchanged
    with pytest.raises(ValueError, match="checksum"):
        layer(x)


@pytest.mark.parametrize("sparsity", [0.5, 0.0])
def test_a_four_bit_layer_holds_at_most_a_byte_per_weight_under_auto(sparsity):
    torch = pytest.importorskip("torch")
    from sparsecodec.nn import SQLinear

    config = sc.SQConfig(sparsity=sparsity, bits=4, group_size=128, scale_dtype="float16")
    layer = SQLinear.from_linear(torch.nn.Linear(512, 384, bias=False), config).eval()
    x = torch.randn(max(BATCHES), 512)
    with torch.inference_mode():
        for batch in BATCHES:
            layer(x[:batch])
    assert layer.memory_nbytes() <= AUTO_MEMORY_BUDGET * 512 * 384


def test_decoded_planes_refuse_a_weight_whose_mask_they_do_not_read():
    from sparsecodec import _native

    a = sc.encode(_weight((96, 256), seed=1), sparsity=0.5, bits=2)
    b = sc.encode(_weight((96, 256), seed=2), sparsity=0.5, bits=2)
    bits_of_a = mm.decoded_bits(a)
    x = np.ones((1, 256), np.float32)
    core = _native.core()
    own = core.matmul(x, native_weight(a), "lut", bits_of_a)
    np.testing.assert_allclose(own, x @ sc.decode(a).T, rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError, match="built for another weight's mask"):
        core.matmul(x, native_weight(b), "lut", bits_of_a)
