"""Bad input gets a TypeError / ValueError that names the problem."""

from __future__ import annotations

import numpy as np
import pytest

import sparsecodec as sc

W = np.random.default_rng(0).standard_normal((8, 12)).astype(np.float32)


@pytest.mark.parametrize(
    "weights,error,match",
    [
        (np.array([[1.0, np.nan]], np.float32), ValueError, "NaN or infinite"),
        (np.array([[1.0, np.inf]], np.float32), ValueError, "NaN or infinite"),
        (np.array([[1e300]], np.float64), ValueError, "outside float32 range"),
        (np.ones(5, np.float32), ValueError, "2-D"),
        (np.ones((2, 2, 2), np.float32), ValueError, "2-D"),
        (np.ones((0, 4), np.float32), ValueError, "empty"),
        (np.ones((2, 2), np.int64), TypeError, "floating-point"),
        (np.ones((2, 2), bool), TypeError, "floating-point"),
        (np.array([["a", "b"]]), TypeError, "floating-point"),
        ([[1.0, 2.0], [3.0, None]], TypeError, "floating-point"),
    ],
)
def test_bad_weights(weights, error, match):
    with pytest.raises(error, match=match):
        sc.encode(weights, bits=1)


def test_bad_masks():
    with pytest.raises(ValueError, match="mask shape"):
        sc.encode(W, mask=np.ones((12, 8), bool))
    with pytest.raises(ValueError, match="only 0 and 1"):
        sc.encode(W, mask=np.full(W.shape, 0.5))
    with pytest.raises(TypeError, match="boolean"):
        sc.encode(W, mask=np.full(W.shape, "x"))
    with pytest.raises(ValueError, match="either mask or sparsity"):
        sc.encode(W, mask=np.ones(W.shape, bool), sparsity=0.5)
    # A 0/1 numeric mask (as torch's pruning utilities produce) is accepted.
    enc = sc.encode(W, mask=(np.arange(W.size).reshape(W.shape) % 2).astype(np.float32))
    assert enc.mask.kept == W.size // 2


@pytest.mark.parametrize(
    "kwargs,error,match",
    [
        (dict(bits=0), ValueError, "bits"),
        (dict(bits=9), ValueError, "bits"),
        (dict(bits=2.0), TypeError, "bits"),
        (dict(bits=True), TypeError, "bits"),
        (dict(sparsity=1.5), ValueError, "sparsity"),
        (dict(sparsity=-0.1), ValueError, "sparsity"),
        (dict(sparsity="half"), TypeError, "sparsity"),
        (dict(depth=0), ValueError, "depth"),
        (dict(depth=5), ValueError, "depth"),
        (dict(n_in=0), ValueError, "n_in"),
        (dict(n_in=65, depth=1), ValueError, "n_in"),
        (dict(n_in=11, depth=2), ValueError, "n_in \\* depth"),
        (dict(n_in=5, depth=4), ValueError, "n_in \\* \\(depth - 1\\)"),
        (dict(n_in=8, n_out=4), ValueError, "n_out"),
        (dict(n_in=8, n_out=9000), ValueError, "n_out"),
        (dict(seed=-1), ValueError, "seed"),
        (dict(chain=100), ValueError, "chain"),
        (dict(group_size=0), ValueError, "group_size"),
        (dict(method="best"), ValueError, "method"),
        (dict(scale_dtype="bfloat16"), ValueError, "scale_dtype"),
        (dict(mask_format="csr"), ValueError, "mask_format"),
    ],
)
def test_bad_parameters(kwargs, error, match):
    with pytest.raises(error, match=match):
        sc.encode(W, **kwargs)


def test_decode_rejects_other_objects_and_bad_out():
    with pytest.raises(TypeError, match="EncodedWeight"):
        sc.decode(W)
    enc = sc.encode(W, sparsity=0.5)
    with pytest.raises(ValueError, match="out must be"):
        sc.decode(enc, out=np.empty((8, 11), np.float32))
    with pytest.raises(ValueError, match="out must be"):
        sc.decode(enc, out=np.empty((8, 12), np.float64))
    with pytest.raises(ValueError, match="C-contiguous"):
        sc.decode(enc, out=np.empty((12, 8), np.float32).T)


def test_from_bytes_rejects_non_bytes():
    with pytest.raises(TypeError, match="bytes-like"):
        sc.EncodedWeight.from_bytes("not bytes")


def test_chain_too_long_for_the_trellis_is_a_value_error():
    with pytest.raises(ValueError, match="chain too long"):
        sc.encode(W, depth=3, n_in=6, n_out=12, chain=1 << 20)
    with pytest.raises(ValueError, match="chain"):
        sc.encode(W, chain=1 << 21)


def test_hand_built_objects_cannot_crash_the_decoder():
    """Fields edited by hand are checked again at the native boundary."""
    import dataclasses

    enc = sc.encode(W, sparsity=0.5, bits=2)
    bad_group = dataclasses.replace(
        enc, quant=dataclasses.replace(enc.quant, group_size=2**63 - 1), scales=np.zeros((8, 0, 2), np.float32)
    )
    with pytest.raises(ValueError, match="group_size"):
        sc.decode(bad_group)
    bad_patches = dataclasses.replace(enc, patches=(np.array([5, 3], np.int64), enc.patches[1]))
    with pytest.raises(ValueError, match="ascending"):
        sc.decode(bad_patches)
    unaligned = np.frombuffer(bytearray(W.size * 4 + 2), np.float32, count=W.size, offset=2).reshape(W.shape)
    with pytest.raises(ValueError, match="aligned|writeable"):
        sc.decode(enc, out=unaligned)


def test_rice_sizes_are_checked():
    from sparsecodec._native import core

    with pytest.raises(ValueError, match="2\\^50"):
        core().rice_encode(np.array([2**63, 2**63], np.uint64), 0)
    with pytest.raises(ValueError, match="Rice parameter"):
        core().rice_bits(np.array([1], np.uint64), 64)
