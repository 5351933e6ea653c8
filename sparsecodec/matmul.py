"""``x @ W^T`` straight from an :class:`EncodedWeight`, never forming the whole of W.

Three strategies, all exact up to float32 rounding:

* ``"sparse"``: a loop over the kept weights only, from the weight's sparse form: per kept weight its
  column and bit pattern, 16 bits (24 when column and pattern do not fit in 16), decoded once from
  the XOR-coded planes on first use and cached on the EncodedWeight. Cost grows with the kept
  weights; batches run 8 lanes per vector with the batch's slice of x held in cache.
* ``"lut"``: streaming, nothing cached: per tile of rows the XOR-coded planes and the mask are
  decoded into cache-sized bit buffers, then lookup tables of subset sums of x per 8 columns
  (BiQGEMM / LUT-GEMM), ``sum_j m_j b_j x_j = 2 S[m & u] - S[m]``; cost grows with all weights.
* ``"dense"``: tiles of rows are dequantised into a reused float buffer and multiplied by a BLAS GEMM;
  the decode is paid once per call, so it wins for large batches.

``strategy="auto"`` picks by a cost model fitted to measurements on AVX2 hardware (bench/README.md).
Choose ``"lut"`` to keep the run-time memory at the size of the compressed stream.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from . import _native
from .xor_codec import EncodedWeight

STRATEGIES = ("auto", "sparse", "lut", "dense")
_TILE_FLOATS = 1 << 20  # decoded tile of the dense strategy: 4 MiB


def matmul(x: Any, enc: EncodedWeight, *, strategy: str = "auto") -> np.ndarray:
    """``x @ decode(enc).T`` for float x of shape (batch, in) or (in,); returns float32."""
    if not isinstance(enc, EncodedWeight):
        raise TypeError(f"matmul expects an EncodedWeight, got {type(enc).__name__}")
    if strategy not in STRATEGIES:
        raise ValueError(f"strategy must be one of {STRATEGIES}, got {strategy!r}")
    arr = np.asarray(x)
    if arr.dtype == object or not np.issubdtype(arr.dtype, np.floating):
        raise TypeError(f"x must be a floating-point array, got dtype {arr.dtype}")
    if arr.ndim not in (1, 2):
        raise ValueError(f"x must be 1-D (in,) or 2-D (batch, in), got shape {arr.shape}")
    rows, cols = enc.shape
    if arr.shape[-1] != cols:
        raise ValueError(f"x has {arr.shape[-1]} features but the weight has {cols} input columns")
    x2 = np.ascontiguousarray(arr.reshape(-1, cols), dtype=np.float32)
    chosen = choose_strategy(enc, x2.shape[0]) if strategy == "auto" else strategy
    if chosen == "lut" and not lut_supported(enc):
        raise ValueError("the 'lut' strategy needs scale groups of whole rows or multiples of 8 columns")
    if chosen == "sparse" and not sparse_supported(enc):
        raise ValueError("the 'sparse' strategy supports at most 32768 input columns at 1 bit, 65536 at more")
    if chosen == "dense":
        out = _dense_tiles(x2, enc)
    else:
        plan = sparse_plan(enc) if chosen == "sparse" else None
        out = _native.core().matmul(x2, native_weight(enc), chosen, plan)
    return out[0] if arr.ndim == 1 else out


def matmul_transposed(g: Any, enc: EncodedWeight) -> np.ndarray:
    """``g @ decode(enc)`` for g of shape (batch, out): the input gradient of ``x @ W^T``. Computed
    from decoded tiles of rows, never the whole of W."""
    if not isinstance(enc, EncodedWeight):
        raise TypeError(f"matmul_transposed expects an EncodedWeight, got {type(enc).__name__}")
    rows, cols = enc.shape
    g2 = np.ascontiguousarray(np.asarray(g, dtype=np.float32).reshape(-1, rows))
    out = np.zeros((g2.shape[0], cols), np.float32)
    step = max(1, min(rows, _TILE_FLOATS // cols))
    tile = np.empty((step, cols), np.float32)
    weight = native_weight(enc)
    for r0 in range(0, rows, step):
        r1 = min(rows, r0 + step)
        _native.core().decode_rows(weight, r0, r1, tile)
        out += g2[:, r0:r1] @ tile[: r1 - r0]
    return out


def native_weight(enc: EncodedWeight) -> tuple:
    """The encoded weight as the kernels take it (one tuple, checked on the native side)."""
    rows, cols = enc.shape
    return (
        enc.code,
        list(enc.patches),
        enc.mask.native_spec(),
        rows,
        cols,
        enc.scales,
        enc.group_size,
        *enc.xor.native_args(),
    )


def decode_rows(enc: EncodedWeight, r0: int, r1: int, out: np.ndarray | None = None) -> np.ndarray:
    """Dequantised rows [r0, r1) of W (a decoded tile), float32 of shape (r1 - r0, in)."""
    rows, cols = enc.shape
    if not 0 <= r0 < r1 <= rows:
        raise ValueError(f"row range [{r0}, {r1}) is outside [0, {rows})")
    buf = np.empty((r1 - r0, cols), np.float32) if out is None else out
    _native.core().decode_rows(native_weight(enc), r0, r1, buf)
    return buf[: r1 - r0]


def _dense_tiles(x: np.ndarray, enc: EncodedWeight) -> np.ndarray:
    rows, cols = enc.shape
    step = max(1, min(rows, _TILE_FLOATS // cols))
    out = np.empty((x.shape[0], rows), np.float32)
    tile = np.empty((step, cols), np.float32)
    weight = native_weight(enc)
    for r0 in range(0, rows, step):
        r1 = min(rows, r0 + step)
        _native.core().decode_rows(weight, r0, r1, tile)
        out[:, r0:r1] = x @ tile[: r1 - r0].T
    return out


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


def choose_strategy(enc: EncodedWeight, batch: int) -> str:
    """The strategy expected to be fastest for this weight and batch size: a cost model in
    nanoseconds on two AVX2 threads, fitted to bench/matmul_latency.py's measurements."""
    positions = enc.shape[0] * enc.shape[1]
    kept, bits, blocks = enc.mask.kept, enc.bits, -(-batch // 8)
    # The per-call plane decode of the streaming kernels: per slice and plane, plus per position.
    decode = bits * (enc.n_slices * 0.45 + positions * 0.025)
    costs = {"dense": decode + positions * (0.3 + 0.1 * batch)}
    if sparse_supported(enc):  # kept weights from the cached sparse form, 8 batch lanes per vector
        costs["sparse"] = kept * (0.4 if batch == 1 else 0.5 + 0.35 * blocks)
    if lut_supported(enc):
        costs["lut"] = decode + positions * 0.3 * (bits + 1) * (1 + 0.5 * (blocks - 1))
    return min(costs, key=costs.get)
