"""``x @ W^T`` straight from an :class:`EncodedWeight`, never forming the whole of W.

Four exact strategies (exact up to float32 rounding) and two fast, approximate ones:

* ``"sparse"``: a loop over the kept weights only, from the weight's sparse form: per kept weight its
  column and bit pattern, 16 bits (24 when column and pattern do not fit in 16), decoded once from
  the XOR-coded planes on first use and cached on the EncodedWeight. Cost grows with the kept
  weights; batches run up to 96 lanes per kept weight with the batch's slice of x held in cache.
* ``"lut"``: lookup tables of subset sums of x per 8 columns (BiQGEMM / LUT-GEMM),
  ``sum_j m_j b_j x_j = 2 S[m & u] - S[m]`` over the keep-mask m and each sign plane u, read from the
  decoded bit-planes, q bits per weight decoded once and cached, and the weight's own bitmap mask (a
  low-rank mask is expanded into the cache, one bit per weight more). Cost grows with all weights,
  not the kept ones: it wins at moderate sparsity and small batches.
* ``"lut_stream"``: the same kernel with nothing cached: per tile of rows the XOR-coded planes and
  the mask are decoded into cache-sized bit buffers as the product goes, so the run-time memory is
  the encoded weight alone (:attr:`EncodedWeight.nbytes`).
* ``"dense"``: tiles of rows are dequantised into a reused float buffer and multiplied by torch's
  GEMM: the decode is paid on every call, so it wins only for batches far larger than the layer.
* ``"lut_int8"`` (approximate, like torch's dynamic int8): the lookup tables are built per 4
  columns and rounded to int8, one scale per batch row and scale group of the weight
  (``s = max |table entry| / 127``), then looked up 64 at a time from registers (AVX-512 VPERMB)
  and summed in int32 (VPDPBUSD); the weight's bits are cached in the kernel's order, (1 + q) bits
  per weight (q when every weight is kept) plus the scales (the alphas as float16 when the stream's
  are, ``scale_dtype="float16"``; beta as float32), in one stream in memory order: at q = 4 with a
  mask and 128-column groups 0.69 bytes per weight, 0.72 with offsets (float32 scales: 0.75 and
  0.78). Only the rounding of the tables differs from the exact product: per scale group and 4
  columns each entry is off by at most ``s / 2``, so
  ``|y - y_exact| <= sum over groups of s * (columns / 4) * (1.5 * sum_p |alpha_p| + 0.5 * |beta|)``.
  Needs scale groups of whole rows or multiples of 32 columns.
* ``"int8_tiles"`` (approximate, computed as torch's dynamic int8 computes, with a scale per scale
  group): per row and scale group the weight is int8, exactly when its values lie on a uniform grid
  with at most 255 points (GPTQ's), else requantised (``s_w = max |w| / 127``); x is quantised per
  batch row and scale group (``s_x = max |x| / 127``). Tiles of 64 rows are decoded from the
  ``"lut_int8"`` cache to int8 in VPDPBUSD's order once per call and multiplied with the whole batch,
  which pays for the decode at large batches. Beyond that cache it keeps 2^q bytes and two numbers
  per row and scale group. At most 4 bits, the same groups as ``"lut_int8"``.

``strategy="auto"`` picks the fastest exact strategy by a cost model fitted to measurements
(:mod:`sparsecodec.cost_model`, refitted by bench/fit_cost_model.py) among those whose caches keep
the weight within :data:`AUTO_MEMORY_BUDGET` bytes per weight (1, int8's), the weight's own arrays
included, and the stream buffer that a weight read in place views (a layer's); ``"auto_int8"`` lets
it pick ``"lut_int8"`` and ``"int8_tiles"`` too where their AVX-512 kernels run, with no memory
budget (below that level they are the scalar references, and ``"auto_int8"`` picks as ``"auto"``
does, without the budget).
:func:`cache_nbytes` tells what the caches of a weight hold, :func:`run_time_nbytes` what the weight
and its caches hold together; :func:`clear_caches` drops the caches.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from . import _native, cost_model
from .formats.xor_codec import EncodedWeight, native_weight
from .options import AUTO_STRATEGIES, STRATEGIES

#: strategy choices (per auto mode, batch size and SIMD level) each weight remembers
MAX_REMEMBERED_CHOICES = 256
TILE_FLOATS = 1 << 20  # decoded tile of the dense strategy (and SQConv2d's decoded convolution): 4 MiB


def matmul(x: Any, enc: EncodedWeight, *, strategy: str = "auto") -> np.ndarray:
    """``x @ decode(enc).T`` for float x of shape (batch, in) or (in,); returns float32.

    ``strategy="auto"`` (default) picks among the exact strategies; ``"auto_int8"`` may also pick
    the int8 kernels where they run as AVX-512 code (see the module docstring for their error
    bounds)."""
    if not isinstance(enc, EncodedWeight):
        raise TypeError(f"matmul expects an EncodedWeight, got {type(enc).__name__}")
    arr = np.asarray(x)
    if arr.dtype.kind != "f":
        raise TypeError(f"x must be a floating-point array, got dtype {arr.dtype}")
    if arr.ndim not in (1, 2):
        raise ValueError(f"x must be 1-D (in,) or 2-D (batch, in), got shape {arr.shape}")
    cols = enc.shape[1]
    if arr.shape[-1] != cols:
        raise ValueError(f"x has {arr.shape[-1]} features but the weight has {cols} input columns")
    x2 = np.ascontiguousarray(arr.reshape(-1, cols), dtype=np.float32)
    out = matmul_rows(x2, enc, strategy)
    return out[0] if arr.ndim == 1 else out


def matmul_rows(x2: np.ndarray, enc: EncodedWeight, strategy: str) -> np.ndarray:
    """:func:`matmul` for x already float32, C-contiguous and (batch, in) with in the weight's
    columns: the layers' path, without re-checking what they have."""
    if strategy not in STRATEGIES:
        raise ValueError(f"strategy must be one of {STRATEGIES}, got {strategy!r}")
    if x2.shape[0] == 0:  # nothing to multiply: no cache built either
        return np.zeros((0, enc.shape[0]), np.float32)
    chosen = choose_strategy(enc, x2.shape[0], strategy) if strategy in AUTO_STRATEGIES else strategy
    runners = enc._runners
    run = runners.get(chosen) if runners is not None else None
    return (run or runner(enc, chosen))(x2)


def runner(enc: EncodedWeight, strategy: str) -> Callable[[np.ndarray], np.ndarray]:
    """The call that runs one (not "auto") strategy on ``enc`` for an x as :func:`matmul_rows` takes
    it: the strategy's checks done and its caches built once, then remembered on ``enc`` (a small
    layer's product costs a few microseconds, as much as repeating them)."""
    if enc._runners is None:
        enc._runners = {}
    run = enc._runners.get(strategy)
    if run is not None:
        return run
    if strategy in ("lut", "lut_stream") and not lut_supported(enc):
        raise ValueError(f"the {strategy!r} strategy needs scale groups of whole rows or multiples of 8 columns")
    if strategy in ("lut_int8", "int8_tiles") and not lut_int8_supported(enc):
        raise ValueError(f"the {strategy!r} strategy needs scale groups of whole rows or multiples of 32 columns")
    if strategy == "int8_tiles" and enc.bits > 4:
        raise ValueError(f"the 'int8_tiles' strategy supports at most 4 bits per weight, this weight has {enc.bits}")
    if strategy == "sparse" and not sparse_supported(enc):
        raise ValueError("the 'sparse' strategy supports at most 32768 input columns at 1 bit, 65536 at more")
    core = _native.core()
    if strategy == "dense":
        run = functools.partial(_dense_tiles, enc=enc)
    elif strategy == "int8_tiles":
        run = _x_first(core.matmul_int8_tiles, lut_int8_weight(enc), int8_tile_values(enc))
    else:
        cache = {"sparse": sparse_plan, "lut_int8": lut_int8_weight, "lut": decoded_bits}.get(strategy)
        plan = cache(enc) if cache is not None else None  # lut_stream: the lut kernel with nothing cached
        run = _x_first(core.matmul, native_weight(enc), "lut" if strategy == "lut_stream" else strategy, plan)
    enc._runners[strategy] = run
    return run


def _x_first(product: Callable, *args: Any) -> Callable[[np.ndarray], np.ndarray]:
    return lambda x2: product(x2, *args)


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


class RowsOutOfRange(ValueError):
    """A row index outside the weight's rows; ``lo`` and ``hi`` are the smallest and largest index asked."""

    def __init__(self, lo: int, hi: int, n_rows: int):
        super().__init__(f"row indices must lie in [0, {n_rows}), got {lo} .. {hi}")
        self.lo, self.hi = lo, hi


def decode_row_set(enc: EncodedWeight, rows: Any) -> np.ndarray:
    """Dequantised rows ``rows`` of W (any order, repeats allowed), float32 of shape (len(rows), in):
    only the slices of those rows are decoded (an embedding lookup). Raises :class:`RowsOutOfRange`
    (a ValueError) when an index is not a row of W."""
    idx = np.asarray(rows)
    if idx.dtype.kind not in "iu":
        raise TypeError(f"rows must be integers, got dtype {idx.dtype}")
    flat = np.ascontiguousarray(idx.reshape(-1), dtype=np.int64)
    n_rows, cols = enc.shape
    out = np.empty((flat.size, cols), np.float32)
    if flat.size:
        weight = native_weight(enc)
        try:  # the native call checks every index before it decodes any
            _native.core().decode_row_set(weight, flat, out)
        except ValueError:
            lo, hi = int(idx.min()), int(idx.max())
            if 0 <= lo and hi < n_rows:
                raise
            raise RowsOutOfRange(lo, hi, n_rows) from None
    return out


def _dense_tiles(x: np.ndarray, enc: EncodedWeight) -> np.ndarray:
    parts = [_gemm(x, tile.T) for _, _, tile in _decoded_tiles(enc)]
    return parts[0] if len(parts) == 1 else np.concatenate(parts, axis=1)


def lut_supported(enc: EncodedWeight) -> bool:
    return enc.group_size >= enc.shape[1] or enc.group_size % 8 == 0


def lut_int8_supported(enc: EncodedWeight) -> bool:
    return enc.group_size >= enc.shape[1] or enc.group_size % 32 == 0


def sparse_supported(enc: EncodedWeight) -> bool:
    return enc.shape[1] <= (32768 if enc.bits == 1 else 65536)


def sparse_plan(enc: EncodedWeight) -> Any:
    """The weight's sparse form: per kept weight its column and bit pattern (2 bytes at 1 bit, 3 at
    more), decoded once from the compressed planes and cached on the encoded weight."""
    if enc._sparse_plan is None:
        enc._sparse_plan = _native.core().SparsePlan(native_weight(enc))
    return enc._sparse_plan


def decoded_bits(enc: EncodedWeight) -> Any:
    """The weight's decoded sign planes for the lookup-table kernel, q bits per weight, decoded once
    and cached on the encoded weight; the kernel reads the keep-mask from the weight's bitmap, or
    from one more bit per weight here when the mask is low-rank."""
    if enc._decoded_bits is None:
        enc._decoded_bits = _native.core().DecodedBits(native_weight(enc))
    return enc._decoded_bits


def lut_int8_weight(enc: EncodedWeight) -> Any:
    """The weight's decoded bits in the int8-table kernel's order with its scales, (1 + q) bits per
    weight (q when every weight is kept: no mask) plus q alphas per row and scale group, float16
    when every alpha is a float16 value and float32 otherwise, and with offsets a float32 beta, built
    once and cached on the encoded weight."""
    if enc._lut_int8 is None:
        enc._lut_int8 = _native.core().LutInt8Weight(native_weight(enc))
    return enc._lut_int8


def int8_tile_values(enc: EncodedWeight) -> Any:
    """The weight's int8 values for the int8-tile kernel (2^q bytes and two numbers per row and scale
    group), built once from :func:`lut_int8_weight` and cached on the encoded weight."""
    if enc._int8_tiles is None:
        enc._int8_tiles = _native.core().Int8TileValues(lut_int8_weight(enc))
    return enc._int8_tiles


def _caches(enc: EncodedWeight) -> tuple[Any, ...]:
    return (enc._sparse_plan, enc._decoded_bits, enc._lut_int8, enc._int8_tiles)


def cache_nbytes(enc: EncodedWeight) -> int:
    """Bytes the matmul caches of ``enc`` hold now (sparse form, decoded bits, int8-table layout,
    int8-tile values; 0 before first use)."""
    return sum(c.nbytes for c in _caches(enc) if c is not None)


def run_time_nbytes(enc: EncodedWeight) -> int:
    """Bytes ``enc`` holds in memory now: the weight itself (:attr:`EncodedWeight.nbytes`) and its
    matmul caches."""
    return enc.nbytes + cache_nbytes(enc)


def _lut_cache_nbytes(enc: EncodedWeight) -> int:
    """What :func:`decoded_bits` will hold (q planes, and a low-rank mask's bits), as the native
    builder lays it out."""
    return int(_native.core().decoded_bits_nbytes(native_weight(enc)))


def _sparse_cache_nbytes(enc: EncodedWeight) -> int:
    """What :func:`sparse_plan` will hold (a segment start per row and scale group, 2 or 3 bytes per
    kept weight), as the native builder lays it out."""
    return int(_native.core().sparse_plan_nbytes(native_weight(enc), enc.mask.kept))


#: The caches ``"auto"`` may build, in the order it admits them under its memory budget: the decoded
#: planes serve every batch size, the sparse form mostly the small ones.
_BUDGETED_CACHES = {"lut": _lut_cache_nbytes, "sparse": _sparse_cache_nbytes}

#: Bytes per weight ``"auto"`` keeps a weight within at run time, the weight and its caches together
#: (:func:`run_time_nbytes`): int8's one byte. A cache that would not fit is not built, and ``"auto"``
#: chooses among what is left (``"lut_stream"`` and ``"dense"`` cache nothing). ``"auto_int8"`` trades
#: memory for speed and has no budget. A compressed layer's weight views its stream buffer
#: (:meth:`EncodedWeight.from_bytes`), so the budget covers the whole layer
#: (``SQLinear.memory_nbytes``).
AUTO_MEMORY_BUDGET = 1.0

#: Bytes the budget never falls below: a tiny weight (a small convolution's) whose stream header
#: alone passes a byte per weight still gets its caches, a few hundred bytes.
AUTO_MEMORY_FLOOR = 16384


def clear_caches(enc: EncodedWeight) -> None:
    """Drop the matmul caches of ``enc``; they are rebuilt on the next call that needs them."""
    enc._sparse_plan = None
    enc._decoded_bits = None
    enc._lut_int8 = None
    enc._int8_tiles = None
    enc._runners = None


def choose_strategy(enc: EncodedWeight, batch: int, auto: str = "auto") -> str:
    """The strategy expected to be fastest for this weight and batch size by the fitted cost model
    (:mod:`sparsecodec.cost_model`): among the exact strategies for ``auto="auto"``, and the int8
    ones as well for ``"auto_int8"`` at the AVX-512 level. Remembered per weight, batch size and SIMD
    level: a model calls its layers with a few batch sizes over and over, and the model's prediction
    costs as much as a small layer's product."""
    memo = enc._strategy_choices
    if memo is None:
        memo = enc._strategy_choices = {}
    key = (auto, batch, _native.simd_level())  # the int8 candidates depend on the level
    chosen = memo.get(key)
    if chosen is None:
        chosen = min(candidate_strategies(enc, auto), key=lambda s: predicted_ns(s, enc, batch))
        if len(memo) < MAX_REMEMBERED_CHOICES:
            memo[key] = chosen
    return chosen


def candidate_strategies(enc: EncodedWeight, auto: str = "auto") -> list[str]:
    """The strategies ``auto`` chooses among that can run on this weight: for ``"auto"`` those within
    the memory budget (:data:`AUTO_MEMORY_BUDGET`). The int8 strategies are candidates of
    ``"auto_int8"`` only at the AVX-512 level: below it their kernels are the scalar references, many
    times slower than the exact strategies' AVX2 kernels."""
    if auto not in AUTO_STRATEGIES:
        raise ValueError(f"auto must be one of {AUTO_STRATEGIES}, got {auto!r}")
    out = ["dense"]
    if sparse_supported(enc):
        out.append("sparse")
    if lut_supported(enc):
        out += ["lut", "lut_stream"]
    if auto == "auto_int8" and int8_kernels_vectorised() and lut_int8_supported(enc):
        out.append("lut_int8")
        if enc.bits <= 4:
            out.append("int8_tiles")
    return out if auto == "auto_int8" else _within_budget(enc, out)


def _within_budget(enc: EncodedWeight, strategies: list[str]) -> list[str]:
    """``strategies`` less the cached ones whose caches would take the weight past
    :data:`AUTO_MEMORY_BUDGET`, admitted in the order of ``_BUDGETED_CACHES``. It counts these caches
    by their predicted sizes, built or not, and not the caches other strategies built (an explicit
    strategy's, or ``"auto_int8"``'s), so that its answer does not depend on what ran before."""
    native_weight(enc)  # what every strategy reads (an all-kept mask expands to ones here): counted
    enc.mask.kept  # noqa: B018 - a low-rank mask expands its bits to count them: counted before, not after
    room = max(AUTO_MEMORY_BUDGET * enc.size, AUTO_MEMORY_FLOOR) - enc.nbytes
    admitted = set()
    for name, predicted_nbytes in _BUDGETED_CACHES.items():
        if name not in strategies:
            continue
        need = predicted_nbytes(enc)
        if need <= room:
            admitted.add(name)
            room -= need
    return [s for s in strategies if s not in _BUDGETED_CACHES or s in admitted]


def int8_kernels_vectorised() -> bool:
    """Whether the int8 strategies run vector kernels at the active SIMD level (AVX-512 only)."""
    return _native.simd_level() == "avx512"


def predicted_ns(strategy: str, enc: EncodedWeight, batch: int) -> float:
    """The cost model's time for one call of ``strategy`` on ``enc`` at this batch size."""
    rows, cols = enc.shape
    return cost_model.predicted_ns(
        strategy, rows=rows, cols=cols, kept=enc.mask.kept, bits=enc.bits, batch=batch, slices=enc.n_slices
    )
