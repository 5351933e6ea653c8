"""``x @ W^T`` straight from an :class:`EncodedWeight`, never forming the whole of W.

Four strategies, all exact up to float32 rounding:

* ``"sparse"``: a loop over the kept weights only, from the weight's sparse form: per kept weight its
  column and bit pattern, 16 bits (24 when column and pattern do not fit in 16), decoded once from
  the XOR-coded planes on first use and cached on the EncodedWeight. Cost grows with the kept
  weights; batches run up to 96 lanes per kept weight with the batch's slice of x held in cache.
* ``"lut"``: lookup tables of subset sums of x per 8 columns (BiQGEMM / LUT-GEMM),
  ``sum_j m_j b_j x_j = 2 S[m & u] - S[m]`` over the keep-mask m and each sign plane u, read from the
  decoded bit-planes and mask, (1 + q) bits per weight decoded once and cached. Cost grows with all
  weights, not the kept ones: it wins at moderate sparsity and small batches.
* ``"lut_stream"``: the same kernel with nothing cached: per tile of rows the XOR-coded planes and
  the mask are decoded into cache-sized bit buffers as the product goes, so the run-time memory is
  the compressed stream alone.
* ``"dense"``: tiles of rows are dequantised into a reused float buffer and multiplied by torch's
  GEMM: the decode is paid on every call, so it wins only for batches far larger than the layer.

``strategy="auto"`` picks by a cost model fitted to measurements on AVX2 hardware (bench/README.md).
:func:`cache_nbytes` tells what the caches of a weight hold; :func:`clear_caches` drops them.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

from . import _native
from .formats.xor_codec import EncodedWeight, native_weight
from .options import STRATEGIES

TILE_FLOATS = 1 << 20  # decoded tile of the dense strategy (and SQConv2d's decoded convolution): 4 MiB


def matmul(x: Any, enc: EncodedWeight, *, strategy: str = "auto") -> np.ndarray:
    """``x @ decode(enc).T`` for float x of shape (batch, in) or (in,); returns float32."""
    if not isinstance(enc, EncodedWeight):
        raise TypeError(f"matmul expects an EncodedWeight, got {type(enc).__name__}")
    if strategy not in STRATEGIES:
        raise ValueError(f"strategy must be one of {STRATEGIES}, got {strategy!r}")
    arr = np.asarray(x)
    if arr.dtype.kind != "f":
        raise TypeError(f"x must be a floating-point array, got dtype {arr.dtype}")
    if arr.ndim not in (1, 2):
        raise ValueError(f"x must be 1-D (in,) or 2-D (batch, in), got shape {arr.shape}")
    rows, cols = enc.shape
    if arr.shape[-1] != cols:
        raise ValueError(f"x has {arr.shape[-1]} features but the weight has {cols} input columns")
    x2 = np.ascontiguousarray(arr.reshape(-1, cols), dtype=np.float32)
    if x2.shape[0] == 0:  # nothing to multiply: no cache built either
        out = np.zeros((0, rows), np.float32)
        return out[0] if arr.ndim == 1 else out
    chosen = choose_strategy(enc, x2.shape[0]) if strategy == "auto" else strategy
    if chosen in ("lut", "lut_stream") and not lut_supported(enc):
        raise ValueError(f"the {chosen!r} strategy needs scale groups of whole rows or multiples of 8 columns")
    if chosen == "sparse" and not sparse_supported(enc):
        raise ValueError("the 'sparse' strategy supports at most 32768 input columns at 1 bit, 65536 at more")
    if chosen == "dense":
        out = _dense_tiles(x2, enc)
    elif chosen == "sparse":
        out = _native.core().matmul(x2, native_weight(enc), "sparse", sparse_plan(enc))
    else:
        bits = decoded_bits(enc) if chosen == "lut" else None
        out = _native.core().matmul(x2, native_weight(enc), "lut", bits)
    return out[0] if arr.ndim == 1 else out


def matmul_transposed(g: Any, enc: EncodedWeight) -> np.ndarray:
    """``g @ decode(enc)`` for g of shape (batch, out): the input gradient of ``x @ W^T``. Computed
    from decoded tiles of rows, never the whole of W."""
    if not isinstance(enc, EncodedWeight):
        raise TypeError(f"matmul_transposed expects an EncodedWeight, got {type(enc).__name__}")
    rows, cols = enc.shape
    g2 = np.ascontiguousarray(np.asarray(g, dtype=np.float32).reshape(-1, rows))
    out = np.zeros((g2.shape[0], cols), np.float32)
    for r0, r1, tile in _decoded_tiles(enc):
        out += _gemm(g2[:, r0:r1], tile)
    return out


def _decoded_tiles(enc: EncodedWeight) -> Iterator[tuple[int, int, np.ndarray]]:
    """(r0, r1, rows [r0, r1) of W) over the weight, in one reused float32 buffer of about
    TILE_FLOATS floats: the decoded-tile strategy's building block (use each tile before the next)."""
    rows, cols = enc.shape
    step = max(1, min(rows, TILE_FLOATS // cols))
    tile = np.empty((step, cols), np.float32)
    weight = native_weight(enc)
    for r0 in range(0, rows, step):
        r1 = min(rows, r0 + step)
        _native.core().decode_rows(weight, r0, r1, tile)
        yield r0, r1, tile[: r1 - r0]


def _gemm(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``a @ b`` in float32 on torch's BLAS when torch is installed (tuned for the CPU, and its thread
    pool already awake in a model), else on numpy's."""
    try:
        import torch
    except ImportError:
        return a @ b
    # torch tensors are always writable: a read-only array is copied rather than shared
    ta, tb = (torch.from_numpy(m if m.flags.writeable else m.copy()) for m in (a, b))
    return (ta @ tb).numpy()


def decode_rows(enc: EncodedWeight, r0: int, r1: int, out: np.ndarray | None = None) -> np.ndarray:
    """Dequantised rows [r0, r1) of W (a decoded tile), float32 of shape (r1 - r0, in)."""
    rows, cols = enc.shape
    if not 0 <= r0 < r1 <= rows:
        raise ValueError(f"row range [{r0}, {r1}) is outside [0, {rows})")
    buf = np.empty((r1 - r0, cols), np.float32) if out is None else out
    _native.core().decode_rows(native_weight(enc), r0, r1, buf)
    return buf[: r1 - r0]


def decode_row_set(enc: EncodedWeight, rows: Any) -> np.ndarray:
    """Dequantised rows ``rows`` of W (any order, repeats allowed), float32 of shape (len(rows), in):
    only the slices of those rows are decoded (an embedding lookup)."""
    idx = np.asarray(rows)
    if idx.dtype.kind not in "iu":
        raise TypeError(f"rows must be integers, got dtype {idx.dtype}")
    idx = idx.reshape(-1).astype(np.int64, copy=False)
    n_rows, cols = enc.shape
    if idx.size and (idx.min() < 0 or idx.max() >= n_rows):
        raise ValueError(f"row indices must lie in [0, {n_rows}), got {int(idx.min())} .. {int(idx.max())}")
    out = np.empty((idx.size, cols), np.float32)
    if idx.size:
        _native.core().decode_row_set(native_weight(enc), np.ascontiguousarray(idx), out)
    return out


def _dense_tiles(x: np.ndarray, enc: EncodedWeight) -> np.ndarray:
    parts = [_gemm(x, tile.T) for _, _, tile in _decoded_tiles(enc)]
    return parts[0] if len(parts) == 1 else np.concatenate(parts, axis=1)


def lut_supported(enc: EncodedWeight) -> bool:
    return enc.group_size >= enc.shape[1] or enc.group_size % 8 == 0


def sparse_supported(enc: EncodedWeight) -> bool:
    return enc.shape[1] <= (32768 if enc.bits == 1 else 65536)


def sparse_plan(enc: EncodedWeight) -> Any:
    """The weight's sparse form: per kept weight its column and bit pattern (2 bytes at 1 bit, 3 at
    more), decoded once from the compressed planes and cached on the encoded weight."""
    if enc._sparse_plan is None:
        enc._sparse_plan = _native.core().SparsePlan(native_weight(enc))
    return enc._sparse_plan


def decoded_bits(enc: EncodedWeight) -> Any:
    """The weight's decoded sign planes and keep-mask for the lookup-table kernel, (1 + q) bits per
    weight, decoded once and cached on the encoded weight."""
    if enc._decoded_bits is None:
        enc._decoded_bits = _native.core().DecodedBits(native_weight(enc))
    return enc._decoded_bits


def cache_nbytes(enc: EncodedWeight) -> int:
    """Bytes the matmul caches of ``enc`` hold now (sparse form and decoded bits; 0 before first use)."""
    return sum(c.nbytes for c in (enc._sparse_plan, enc._decoded_bits) if c is not None)


def clear_caches(enc: EncodedWeight) -> None:
    """Drop the matmul caches of ``enc``; they are rebuilt on the next call that needs them."""
    enc._sparse_plan = None
    enc._decoded_bits = None


def choose_strategy(enc: EncodedWeight, batch: int) -> str:
    """The strategy expected to be fastest for this weight and batch size: a cost model in
    nanoseconds on two AVX2 threads, fitted to bench/matmul_latency.py's measurements."""
    positions, kept, bits, blocks = enc.size, enc.mask.kept, enc.bits, -(-batch // 8)
    # dense: decode to float tiles (about 0.75 ns per position, 20 us per call), then torch's GEMM
    costs = {"dense": 20_000 + positions * (0.75 + 0.016 * batch)}
    prepare = batch * enc.shape[1] * 1.5 if batch > 1 else 0.0  # x laid out by lanes for the kernels
    if sparse_supported(enc):
        if batch == 1:
            costs["sparse"] = kept * (0.23 if bits == 1 else 0.33)
        else:  # per kept weight and pass (a chunk of up to 96 lanes) and lane, plus per row and panel
            costs["sparse"] = kept * (0.6 * -(-blocks // 12) + 0.08 * blocks) + positions * 0.018 * blocks + prepare
    if lut_supported(enc):  # per position and table lookup (mask and each plane)
        costs["lut"] = positions * (bits + 1) * (0.065 if batch == 1 else 0.05 + 0.035 * blocks) + prepare
    return min(costs, key=costs.get)
