"""The sparse-quantised weight format: BCQ bit-planes, each encoded with a seeded XOR network.

``encode`` prunes (or takes a keep-mask), quantises the kept weights with binary-coding
quantisation, and encodes every bit-plane so that each slice of ``n_out`` weights costs exactly
``n_in`` stored bits; pruned positions are don't-care, and the rare care bits no code word can
reproduce are stored as patches. ``decode`` reproduces the dequantised, masked weights bit for bit.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .. import _native
from ..calibration.second_order import SolverOptions, UniformGrid, check_hessian, obs_saliency, solve
from ..masks import BitmapMask, MaskFormat, NoMask, mask_from_stream
from ..masks.lowrank_search import lowrank_mask
from ..masks.pruning import input_norms_from_hessian, magnitude_mask, wanda_mask, wanda_scores
from ..options import LAYOUTS, PRUNINGS, mask_formats, methods, scale_dtypes
from ..quantizers import (
    CALIBRATED_METHODS,
    MAX_BITS,
    SCALE_DTYPES,
    VALUE_MODELS,
    calibration_needed,
    dequantize,
    groups_for,
    quantization_error,
    quantize,
)
from ..quantizers.gptq import quantized_on_grid
from ..validation import as_choice, as_fraction, as_int, as_keep_mask, as_weight_matrix
from .bitpack import bytes_to_words, pack_bits, unpack_bits, words_for, words_to_bytes
from .stream import (
    ALIGNED_FROM_VERSION,
    Stream,
    StreamError,
    buffer_address,
    read_stream,
    stream_exporter,
    write_stream,
)

METHOD = "xor-bcq"

#: Default stored bits per slice for each shift-register depth.
DEFAULT_N_IN = {1: 64, 2: 8, 3: 6, 4: 4}
DEFAULT_DEPTH = 2
DEFAULT_CHAIN = 1024
DEFAULT_SEED = 0
MAX_N_OUT = 8192
MAX_DEPTH = 4
MAX_CHAIN = 1 << 20
MAX_GROUP_BANDS = 1024
# Derived from an EncodedWeight's data fields on first use, dropped when one of them is reassigned.
_CACHES = (
    "_stats",
    "_sparse_plan",
    "_decoded_bits",
    "_lut_int8",
    "_int8_tiles",
    "_native",
    "_strategy_choices",
    "_runners",
)
# n_out = factor * n_in / (1 - S) maximised measured efficiency on i.i.d. masks at S = 0.5 .. 0.95
# (bench/README.md): larger slices overload more of them, which the cheap patches absorb.
_N_OUT_FACTOR = {1: 1.10}
_N_OUT_FACTOR_DEEP = 1.25


def default_group_bands(n_out: int) -> int:
    """Bands of 64 slices per scatter group: groups of about 2^17 weights (16 KiB of bits per plane)."""
    return int(min(64, max(1, -(-(1 << 17) // (64 * n_out)))))


def default_n_in(depth: int) -> int:
    """The default stored bits per slice for ``depth``."""
    return DEFAULT_N_IN[depth]


def default_n_out(n_in: int, depth: int, sparsity: float) -> int:
    """The slice length that maximises encoding efficiency at this sparsity (measured)."""
    density = 1.0 - sparsity
    if density >= 0.95:
        return n_in  # nearly dense: one stored bit per weight, the XOR network only fixes ranks
    factor = _N_OUT_FACTOR.get(depth, _N_OUT_FACTOR_DEEP)
    return int(min(MAX_N_OUT, max(n_in, round(factor * n_in / max(density, 1e-12)))))


@dataclass(frozen=True)
class QuantSpec:
    """How the kept weights were quantised: ``value_model`` is what decoding needs (see
    :mod:`sparsecodec.quantizers`), ``method`` how the values were fitted (informational)."""

    bits: int
    method: str
    group_size: int
    scale_dtype: str
    value_model: str = "bcq"


@dataclass(frozen=True)
class XorSpec:
    """The XOR network and slicing of the bit-planes.

    ``layout`` places the slices in the matrix: ``"linear"`` (slice t holds positions
    [t n_out, (t + 1) n_out)) or ``"scatter"`` (each slice samples n_out scattered words of a group of
    ``group_bands`` x 64 slices, which keeps structured masks efficient; see csrc/slice_layout.h).
    """

    n_in: int
    n_out: int
    depth: int
    seed: int
    chain: int
    layout: str = "linear"
    group_bands: int = 0  # scatter layout only; 0 = the decoder's own chunking for "linear"

    def native_args(self) -> tuple:
        """(n_in, n_out, depth, seed, chain, layout, group_bands) as the kernels take them."""
        bands = self.group_bands or default_group_bands(self.n_out)
        return self.n_in, self.n_out, self.depth, self.seed, self.chain, self.layout, bands

    def header(self) -> dict[str, Any]:
        base = {"n_in": self.n_in, "n_out": self.n_out, "depth": self.depth, "seed": self.seed, "chain": self.chain}
        if self.layout == "scatter":
            base.update(layout=self.layout, group_bands=self.group_bands)
        return base


@dataclass(eq=False)
class EncodedWeight:
    """A compressed 2-D weight matrix: value-model parameters, keep-mask, XOR-coded bit-planes and
    patches.

    Build one with :func:`encode` or :meth:`from_bytes`; turn it back into weights with
    :func:`decode`. ``stats`` reports the cost in bits per weight. ``scales`` (and ``offsets``, for
    value models with an offset) are the per-group values decoding uses, expanded from
    ``value_params``, what the stream stores.
    """

    shape: tuple[int, int]
    source_dtype: str
    quant: QuantSpec
    xor: XorSpec
    scales: np.ndarray  # float32 (rows, groups, bits)
    mask: MaskFormat
    code: np.ndarray  # uint64 (bits, code words): slice t's word at bit t * n_in
    patches: tuple[np.ndarray, ...]  # per plane: ascending flat positions decoded flipped (uint32 where they fit)
    quant_error: dict[str, float] | None = None
    offsets: np.ndarray | None = None  # float32 (rows, groups), or None: no offsets
    # The stored arrays of a value model that are not the scales and offsets themselves ("uniform":
    # step and zero point); None for "bcq" and "bcq-offset".
    value_params: dict[str, np.ndarray] | None = None
    # Derived from the fields above, on first use: never copied by dataclasses.replace, never
    # compared, and dropped when a field above is reassigned (see __setattr__).
    _stats: dict[str, Any] | None = field(default=None, init=False, repr=False, compare=False)
    _sparse_plan: Any = field(default=None, init=False, repr=False, compare=False)  # see sparsecodec.matmul
    _decoded_bits: Any = field(default=None, init=False, repr=False, compare=False)  # see sparsecodec.matmul
    _lut_int8: Any = field(default=None, init=False, repr=False, compare=False)  # see sparsecodec.matmul
    _int8_tiles: Any = field(default=None, init=False, repr=False, compare=False)  # see sparsecodec.matmul
    _native: Any = field(default=None, init=False, repr=False, compare=False)  # the kernels' checked view
    # (auto strategy, batch, SIMD level) -> what sparsecodec.matmul.choose_strategy picked
    _strategy_choices: Any = field(default=None, init=False, repr=False, compare=False)
    # strategy -> the call that runs it, its caches bound (see sparsecodec.matmul.runner)
    _runners: Any = field(default=None, init=False, repr=False, compare=False)

    bits = property(lambda self: self.quant.bits, doc="BCQ bit-planes q.")
    quant_method = property(lambda self: self.quant.method)
    value_model = property(
        lambda self: self.quant.value_model, doc="What decoding needs: 'bcq', 'bcq-offset', 'uniform'."
    )
    group_size = property(lambda self: self.quant.group_size)
    scale_dtype = property(lambda self: self.quant.scale_dtype)
    n_in = property(lambda self: self.xor.n_in, doc="Stored bits per slice.")
    n_out = property(lambda self: self.xor.n_out, doc="Weights per slice.")
    depth = property(lambda self: self.xor.depth, doc="Shift-register depth N_s.")
    seed = property(lambda self: self.xor.seed)
    chain = property(lambda self: self.xor.chain)

    def __setattr__(self, name: str, value: Any) -> None:
        if name == "patches":
            value = tuple(_compact_positions(p, self.size) for p in value)
        super().__setattr__(name, value)
        if not name.startswith("_") and name != "quant_error":  # the data changed: derived caches go
            for cache in _CACHES:
                super().__setattr__(cache, None)

    def __getstate__(self) -> dict[str, Any]:
        # The matmul caches are native objects rebuilt on demand: pickles and copies go without them.
        state = dict(self.__dict__)
        for cache in _CACHES[1:]:
            state[cache] = None
        return state

    def stored_params(self) -> dict[str, np.ndarray]:
        """The value model's parameter arrays as the stream stores them (checked against the scales
        and offsets decoding uses, so that a stream never stores other values than it decodes to)."""
        model = VALUE_MODELS[self.value_model]
        if self.value_params is None:
            params = {"scales": self.scales}
            if self.offsets is not None:
                params["offsets"] = self.offsets
        else:
            params = dict(self.value_params)
        if set(params) != set(model.param_names):
            raise ValueError(f"value model {self.value_model!r} stores {model.param_names}, got {sorted(params)}")
        scales, offsets = model.expand(params, self.bits)
        same_offsets = (offsets is None and self.offsets is None) or (
            offsets is not None and self.offsets is not None and np.array_equal(offsets, self.offsets)
        )
        if not (np.array_equal(scales, self.scales) and same_offsets):
            raise ValueError(f"the scales or offsets no longer match the stored {self.value_model!r} parameters")
        return params

    # ----------------------------------------------------------------------------------------
    @property
    def size(self) -> int:
        return self.shape[0] * self.shape[1]

    @property
    def nbytes(self) -> int:
        """Bytes this weight holds in memory before any matmul cache: its coded planes, patch
        positions, scales, offsets, value-model parameters, keep-mask (:attr:`MaskFormat.nbytes`) and,
        once the kernels have run, the XOR network's decode tables. More than its stream: the stream
        Rice-codes the patches and may store float16 scales.

        Arrays that view a stream's buffer (:meth:`from_bytes` reads in place) count as that whole
        buffer, once (:attr:`stream_nbytes`)."""
        own = sum(a.nbytes for a in self._arrays() if stream_exporter(a) is None)
        mask_bits = self.mask.held_bits()
        if mask_bits is not None and stream_exporter(mask_bits) is not None:
            own -= mask_bits.nbytes  # inside MaskFormat.nbytes below, but held by the stream
        network = 0 if self._native is None else self._native.network_nbytes  # its decode tables
        return own + self.mask.nbytes + self.stream_nbytes + network

    @property
    def stream_nbytes(self) -> int:
        """Bytes of the stream buffers this weight's arrays view (0 when they hold their own)."""
        return sum(memoryview(e).nbytes for e in self._viewed_streams().values())

    @property
    def stream_span(self) -> tuple[int, int] | None:
        """(address, length) of the one stream buffer this weight's arrays view, or None."""
        streams = list(self._viewed_streams().values())
        if len(streams) != 1:
            return None
        view = memoryview(streams[0]).cast("B")
        return buffer_address(view), len(view)

    def _arrays(self) -> list[np.ndarray]:
        arrays = [self.code, self.scales, *self.patches, *(self.value_params or {}).values()]
        if self.offsets is not None:
            arrays.append(self.offsets)
        return [np.asarray(a) for a in arrays]

    def _viewed_streams(self) -> dict[int, Any]:
        """id -> exporter of every stream buffer an array of this weight (or its mask bits) views."""
        bits = self.mask.held_bits()
        arrays = self._arrays() + ([] if bits is None else [bits])
        exporters = (stream_exporter(a) for a in arrays)
        return {id(e): e for e in exporters if e is not None}

    @property
    def n_slices(self) -> int:
        return -(-self.size // self.n_out)

    @property
    def sparsity(self) -> float:
        return self.mask.sparsity

    @property
    def stats(self) -> dict[str, Any]:
        """Cost and quality figures (bits per weight are per weight of the full matrix).

        ``values_bpw`` (XOR-coded planes), ``patch_bpw``, ``mask_bpw``, ``scale_bpw``, ``total_bpw``,
        ``efficiency`` = bits (1 - S) m n / (value + patch bits), ``efficiency_mr`` (memory reduction
        over S, for comparison with papers that use it), ``bound_bpw`` = bits (1 - S), ``patches``,
        ``sparsity``, and the quantisation error of the kept weights when known.
        """
        if self._stats is None:
            self._stats = self._compute_stats()
        return dict(self._stats)

    def _compute_stats(self) -> dict[str, Any]:
        n = self.size
        kept = self.mask.kept
        value_bits = self.bits * self.n_slices * self.n_in
        patch_bits = sum(_rice_plan(self._patch_gaps(i))[1] for i in range(self.bits))
        rows, groups = self.scales.shape[:2]
        scale_bits = VALUE_MODELS[self.value_model].stored_bits(rows, groups, self.bits, self.scale_dtype)
        mask_bits = self.mask.stored_bits()
        coded = value_bits + patch_bits
        sparsity = 1.0 - kept / n
        stats: dict[str, Any] = {
            "values_bpw": value_bits / n,
            "patch_bpw": patch_bits / n,
            "mask_bpw": mask_bits / n,
            "scale_bpw": scale_bits / n,
            "total_bpw": (coded + mask_bits + scale_bits) / n,
            "bound_bpw": self.bits * (1.0 - sparsity),
            "efficiency": self.bits * kept / coded,
            "efficiency_mr": (1.0 - coded / (self.bits * n)) / sparsity if sparsity > 0 else float("nan"),
            "patches": int(sum(len(p) for p in self.patches)),
            "patches_per_plane": [int(len(p)) for p in self.patches],
            "sparsity": sparsity,
            "kept": kept,
            "bits": self.bits,
            "n_in": self.n_in,
            "n_out": self.n_out,
            "depth": self.depth,
            "mask_format": self.mask.format_id,
            "value_model": self.value_model,
            "method": self.quant_method,
        }
        if self.quant_error is not None:
            stats["quant_rmse"] = self.quant_error["rmse"]
            stats["quant_relative_error"] = self.quant_error["relative"]
        return stats

    def __repr__(self) -> str:
        s = self.stats
        return (
            f"EncodedWeight(shape={self.shape}, bits={self.bits}, sparsity={s['sparsity']:.3f}, "
            f"n_in={self.n_in}, n_out={self.n_out}, depth={self.depth}, "
            f"total_bpw={s['total_bpw']:.4f}, efficiency={s['efficiency']:.3f})"
        )

    # ----------------------------------------------------------------------------------------
    def decode_planes(self) -> np.ndarray:
        """The decoded sign planes as bool (bits, rows, cols), patches applied (pruned positions hold
        whatever the XOR network produces there)."""
        words = _native.core().decode_planes(self.code, list(self.patches), self.size, *self.xor.native_args())
        return np.stack([unpack_bits(w, self.size).reshape(self.shape) for w in words])

    def _patch_gaps(self, plane: int) -> np.ndarray:
        """Gaps between the care-bit indices of one plane's patches (what the stream Rice-codes)."""
        positions = self.patches[plane]
        if len(positions) == 0:
            return np.zeros(0, dtype=np.uint64)
        care_index = _native.core().care_rank(self.mask.bits(), self.size, positions.astype(np.int64))
        return (np.diff(care_index, prepend=-1) - 1).astype(np.uint64)

    # ----------------------------------------------------------------------------------------
    def to_bytes(self) -> bytes:
        """Serialise to a self-describing stream (see :mod:`sparsecodec.formats.stream`)."""
        rice_k, sections = [], []
        for i in range(self.bits):
            gaps = self._patch_gaps(i)
            k, _ = _rice_plan(gaps)
            rice_k.append(k)
            sections.append((f"PAT{i}", _native.core().rice_encode(gaps, k)))
        header: dict[str, Any] = {
            "shape": list(self.shape),
            "dtype": self.source_dtype,
            "bits": self.bits,
            "quant": {
                "method": self.quant_method,
                "value_model": self.value_model,
                "group_size": self.group_size,
                "scale_dtype": self.scale_dtype,
            },
            "xor": self.xor.header(),
            "mask": {"format": self.mask.format_id, **self.mask.params()},
            "patches": {"coding": "rice-care-gaps", "counts": [int(len(p)) for p in self.patches], "rice_k": rice_k},
        }
        if self.quant_error is not None:
            header["info"] = {
                "quant_rmse": self.quant_error["rmse"],
                "quant_relative_error": self.quant_error["relative"],
            }
        # Each plane as whole words, so that a reader can use the planes in place (format 3 on).
        plane_bits = words_for(self.n_slices * self.n_in) * 64
        head_sections = VALUE_MODELS[self.value_model].sections(self.stored_params(), self.scale_dtype) + [
            ("MASK", self.mask.payload()),
            ("CODE", b"".join(words_to_bytes(plane, plane_bits) for plane in self.code)),
        ]
        return write_stream(METHOD, header, head_sections + sections)

    @classmethod
    def from_bytes(cls, data: bytes | bytearray | memoryview | np.ndarray, *, in_place: bool = False) -> EncodedWeight:
        """Rebuild from :meth:`to_bytes` output. Damaged, truncated, foreign or too-new streams raise
        :class:`~sparsecodec.formats.stream.StreamError` (a ValueError) naming the problem.

        The weight keeps read-only views into the stream for its coded planes and a bitmap mask
        (format 3 on, at an 8-byte aligned address) and its stored parameters, which keep the
        stream's buffer alive (counted once in :attr:`nbytes`). A ``bytes`` object, which cannot
        change, is read in place; any other buffer is copied first, unless ``in_place=True``, which
        promises that ``data`` does not change while the weight is in use."""
        if not in_place and not isinstance(data, bytes):
            data = memoryview(data).tobytes() if not isinstance(data, np.ndarray) else data.tobytes()
        stream = read_stream(data)
        if stream.method != METHOD:
            raise StreamError(f"stream holds method {stream.method!r}, not an encoded weight ({METHOD!r})")
        return _parse_xor_bcq(stream)


# -------------------------------------------------------------------------------------------------
def encode(
    weights: Any,
    mask: Any = None,
    sparsity: float | None = None,
    bits: int = 2,
    *,
    group_size: int | None = None,
    method: str = "greedy",
    iterations: int = 8,
    scale_dtype: str = "float32",
    n_in: int | None = None,
    n_out: int | None = None,
    depth: int | None = None,
    seed: int | None = None,
    chain: int = DEFAULT_CHAIN,
    layout: str | None = None,
    mask_format: str | None = None,
    rank: int | None = None,
    tile: Any = None,
    importance: Any = None,
    pruning: str | None = None,
    hessian: Any = None,
    solver: SolverOptions | None = None,
) -> EncodedWeight:
    """Prune, quantise and XOR-encode a 2-D float weight matrix.

    Args:
        weights: 2-D float array (rows = output features, cols = input features).
        mask: boolean keep-mask (True = kept) of the same shape, or a stored mask object
            (:class:`BitmapMask`, :class:`LowRankMask`) that is kept as it is. With neither
            ``mask`` nor ``sparsity``, exact zeros of ``weights`` are taken as pruned.
        sparsity: prune this share of weights (by magnitude, or by the low-rank index search)
            instead of giving a mask.
        bits: BCQ bit-planes q, 1..8.
        group_size: columns per scale group; None = one set of scales per row.
        method: how the kept weights are fitted (a registered quantizer, see
            :mod:`sparsecodec.quantizers`): ``"greedy"`` (BCQ residual binarisation), ``"alternating"``
            (least-squares scales and an offset; never worse than greedy or uniform) or ``"uniform"``
            (round to nearest on an asymmetric q-bit grid per group: step and zero point).
        iterations: alternating-refinement rounds.
        scale_dtype: ``"float32"`` or ``"float16"`` scales.
        n_in, n_out: stored bits per slice and slice length; defaults maximise efficiency for the
            mask's sparsity (:func:`default_n_in`, :func:`default_n_out`).
        depth: shift-register depth N_s (1 = one word per slice; >= 2 = each slice also reads the
            previous depth-1 words, encoded by dynamic programming). Default: 2, or 1 when nothing is
            pruned (no don't-care bits to exploit: a square invertible network stores every bit as is).
        seed: seed of the XOR network. Default: 0, or when nothing is pruned and the network is
            square, the first seed whose network is invertible (so that no patch is ever needed).
        chain: slices per shift-register chain (a multiple of 64; depth >= 2 only).
        layout: ``"scatter"`` (each slice samples weights spread over a group, so structured masks
            encode as well as random ones) or ``"linear"`` (slices are consecutive weights, so a row
            decodes alone). Default: ``"linear"`` when nothing is pruned, else ``"scatter"``.
        mask_format: how the keep-mask is stored: ``"bitmap"`` (one bit per weight), ``"lowrank"``
            (tiled Boolean product of binary factors, chosen here to keep the most ``importance`` at
            ``sparsity``; see :func:`sparsecodec.lowrank_mask`) or ``"none"`` (every weight kept,
            nothing stored). Default: ``"none"`` when every weight is kept, else ``"bitmap"``.
        rank, tile: rank per tile (default 8) and tile shape (default: one tile) of ``"lowrank"``.
        importance: what the low-rank search keeps (default ``|weights|``, or the ``pruning`` score).
        pruning: how ``sparsity`` chooses the pruned weights: ``"magnitude"`` (default), ``"wanda"``
            (``|w| * ||x||`` per output row) or ``"sparsegpt"`` (chosen while the layer is
            reconstructed; jointly with the quantisation when ``method="gptq"``). The last two need
            ``hessian``. With ``mask_format="lowrank"`` their score is the low-rank search's importance.
        hessian: the Hessian ``X^T X`` (cols, cols) of the layer's inputs over calibration data, for
            ``method="gptq"`` and the calibrated prunings (see :mod:`sparsecodec.calibration`).
        solver: :class:`~sparsecodec.calibration.SolverOptions` of GPTQ / SparseGPT (damping, block,
            act-order, clipping search).
    """
    w, source_dtype = as_weight_matrix(weights)
    rows, cols = w.shape
    q = as_int(bits, "bits", 1, MAX_BITS)
    chain = as_int(chain, "chain", 64, MAX_CHAIN)
    if chain % 64:
        raise ValueError(f"chain must be a multiple of 64, got {chain}")
    iterations = as_int(iterations, "iterations", 0, 10_000)
    as_choice(method, "method", methods())
    as_choice(scale_dtype, "scale_dtype", scale_dtypes())
    gs = cols if group_size is None else min(as_int(group_size, "group_size", 1, 1 << 40), cols)
    prune = as_choice("magnitude" if pruning is None else pruning, "pruning", PRUNINGS)
    h = None if hessian is None else check_hessian(hessian, cols)
    if method in CALIBRATED_METHODS and h is None:
        raise ValueError(calibration_needed(f"method={method!r}"))
    if prune != "magnitude":
        if h is None:
            raise ValueError(calibration_needed(f"pruning={prune!r}"))
        if sparsity is None:
            raise ValueError(f"pruning={prune!r} chooses a mask at a given sparsity: pass sparsity, not a mask")
    if h is not None and method not in CALIBRATED_METHODS and prune == "magnitude":
        raise ValueError(f"hessian is used by method='gptq' and pruning='wanda'/'sparsegpt', not by {method!r}")
    if solver is not None and not isinstance(solver, SolverOptions):
        raise TypeError(f"solver must be a SolverOptions, got {type(solver).__name__}")
    fitted, quant = w, None
    if prune == "magnitude":
        mask_obj = _resolve_mask(w, mask, sparsity, mask_format, rank, tile, importance)
    elif prune == "wanda" or mask_format == "lowrank":
        target = as_fraction(sparsity, "sparsity")
        if mask_format == "lowrank":
            score = wanda_scores(w, input_norms_from_hessian(h)) if prune == "wanda" else obs_saliency(w, h)
            mask_obj = _resolve_mask(
                w, None, target, mask_format, rank, tile, score if importance is None else importance
            )
        else:
            chosen = wanda_mask(w, input_norms_from_hessian(h), target)
            mask_obj = _resolve_mask(w, chosen, None, mask_format, rank, tile, importance)
        if prune == "sparsegpt" and method not in CALIBRATED_METHODS:  # reconstruct around the fixed mask
            fitted = solve(w, h, keep=mask_obj.to_dense(), options=solver).weights
    else:  # SparseGPT chooses the mask itself, block by block
        if importance is not None or rank is not None or tile is not None:
            raise ValueError("pruning='sparsegpt' chooses its own mask; rank, tile and importance are for lowrank")
        grid = UniformGrid(q, gs, scale_dtype) if method in CALIBRATED_METHODS else None
        solution = solve(w, h, sparsity=as_fraction(sparsity, "sparsity"), grid=grid, options=solver)
        mask_obj = _resolve_mask(w, solution.keep, None, mask_format, None, None, None)
        if grid is not None:
            quant = quantized_on_grid(solution.codes, solution.step, solution.zero, q, gs, scale_dtype, method)
        else:
            fitted = solution.weights
    keep = mask_obj.to_dense()
    if layout is None:
        layout = "linear" if isinstance(mask_obj, NoMask) else "scatter"
    as_choice(layout, "layout", LAYOUTS)
    everything_kept = isinstance(mask_obj, NoMask)
    if depth is None:
        depth = 1 if everything_kept else DEFAULT_DEPTH
    depth = as_int(depth, "depth", 1, MAX_DEPTH)

    n_in = default_n_in(depth) if n_in is None else as_int(n_in, "n_in", 1, 64)
    n_out = default_n_out(n_in, depth, mask_obj.sparsity) if n_out is None else as_int(n_out, "n_out", 1, MAX_N_OUT)
    core = _native.core()
    core.check_network(n_in, n_out, depth)
    if seed is None:
        seed = invertible_seed(n_in) if everything_kept and depth == 1 and n_in == n_out else DEFAULT_SEED
    seed = as_int(seed, "seed", 0, 2**64 - 1)

    xor = XorSpec(n_in, n_out, depth, seed, chain, layout, default_group_bands(n_out) if layout == "scatter" else 0)
    if quant is None:
        calibrated = {"hessian": h, "options": solver} if method in CALIBRATED_METHODS else {}
        quant = quantize(
            fitted, keep, q, group_size=gs, method=method, iterations=iterations, scale_dtype=scale_dtype, **calibrated
        )
    approx = dequantize(quant.scales, quant.planes, keep, gs, quant.offsets)
    targets = np.stack([pack_bits(p) for p in quant.planes])
    code, patches = core.encode_planes(targets, mask_obj.bits(), rows * cols, *xor.native_args())
    specs = (QuantSpec(q, method, gs, scale_dtype, quant.value_model), xor)
    return EncodedWeight(
        (rows, cols),
        source_dtype,
        *specs,
        quant.scales,
        mask_obj,
        code,
        tuple(patches),
        quantization_error(w, approx, keep),
        quant.offsets,
        dict(quant.params) if VALUE_MODELS[quant.value_model].own_params else None,
    )


@functools.cache
def invertible_seed(n: int, tries: int = 256) -> int:
    """The first seed whose depth-1 n x n XOR network is invertible over GF(2) (about one seed in
    three is): every slice of a plane with no don't-care bits then has exactly one code word."""
    core = _native.core()
    for seed in range(tries):
        if _gf2_rank(core.xor_network_rows(n, n, 1, seed)) == n:
            return seed
    return DEFAULT_SEED  # not reached in practice; patches then cover the rank deficit


def _gf2_rank(rows: np.ndarray) -> int:
    """Rank over GF(2) of a matrix given as one integer bit row per entry."""
    pivots: list[int] = []
    for value in (int(r) for r in rows):
        for p in pivots:
            value = min(value, value ^ p)
        if value:
            pivots.append(value)
            pivots.sort(reverse=True)
    return len(pivots)


def _resolve_mask(w, mask, sparsity, mask_format, rank, tile, importance) -> MaskFormat:
    """The stored keep-mask that encode() was asked for."""
    if mask is not None and sparsity is not None:
        raise ValueError("give either mask or sparsity, not both")
    if isinstance(mask, MaskFormat):
        if mask.shape != w.shape:
            raise ValueError(f"mask shape {mask.shape} does not match weights shape {w.shape}")
        if mask_format not in (None, mask.format_id):
            raise ValueError(f"mask is a {mask.format_id!r} mask but mask_format={mask_format!r} was asked for")
        if rank is not None or tile is not None or importance is not None:
            raise ValueError("rank, tile and importance choose a new low-rank mask; the given mask is used as it is")
        return mask
    fmt = None if mask_format is None else as_choice(mask_format, "mask_format", mask_formats())
    if fmt == "lowrank":
        if mask is not None:
            raise ValueError(
                "mask_format='lowrank' chooses its own mask: pass sparsity (and optionally importance), "
                "or pass a LowRankMask as mask"
            )
        target = as_fraction(sparsity, "sparsity") if sparsity is not None else float(np.mean(w == 0))
        imp = np.abs(w) if importance is None else importance
        if np.shape(imp) != w.shape:
            raise ValueError(f"importance shape {np.shape(imp)} does not match weights shape {w.shape}")
        return lowrank_mask(imp, target, 8 if rank is None else rank, tile)
    if rank is not None or tile is not None or importance is not None:
        raise ValueError(f"rank, tile and importance apply to mask_format='lowrank', not {fmt or 'bitmap'!r}")
    if mask is not None:
        keep = as_keep_mask(mask, w.shape)
    elif sparsity is not None:
        keep = magnitude_mask(w, as_fraction(sparsity, "sparsity"))
    elif fmt == "none":
        keep = np.ones(w.shape, dtype=bool)
    else:
        keep = w != 0
    if fmt == "none" or (fmt is None and keep.all()):
        if not keep.all():
            raise ValueError(f"mask_format='none' keeps every weight, but the mask prunes {int((~keep).sum())}")
        return NoMask(w.shape)
    return BitmapMask.from_dense(keep)


def decode(enc: EncodedWeight, out: np.ndarray | None = None) -> np.ndarray:
    """Dense float32 weights: the BCQ-dequantised values at kept positions, +0.0 elsewhere.

    ``out``, if given, must be a writeable C-contiguous float32 array of ``enc.shape``; it is filled
    and returned (saves the allocation when decoding repeatedly).
    """
    if not isinstance(enc, EncodedWeight):
        raise TypeError(f"decode expects an EncodedWeight, got {type(enc).__name__}")
    if out is not None:
        if not isinstance(out, np.ndarray) or out.dtype != np.float32 or out.shape != enc.shape:
            raise ValueError(f"out must be a float32 numpy array of shape {enc.shape}")
        if not out.flags.c_contiguous or not out.flags.writeable:
            raise ValueError("out must be C-contiguous and writeable")
    return _native.core().decode_dense(native_weight(enc), enc.mask.bits(), out)


def native_weight(enc: EncodedWeight) -> Any:
    """The encoded weight as the kernels take it (``_core.Weight``): its arrays and parameters
    checked once natively, then cached on ``enc`` until one of its fields is reassigned."""
    if enc._native is None:
        rows, cols = enc.shape
        n_in, n_out, depth, seed, chain, layout, bands = enc.xor.native_args()
        enc._native = _native.core().Weight(
            code=enc.code,
            patches=list(enc.patches),
            mask=enc.mask.native_spec(),
            rows=rows,
            cols=cols,
            scales=enc.scales,
            offsets=enc.offsets,
            group_size=enc.group_size,
            n_in=n_in,
            n_out=n_out,
            depth=depth,
            seed=seed,
            chain=chain,
            layout=layout,
            group_bands=bands,
        )
    return enc._native


# -------------------------------------------------------------------------------------------------
def _compact_positions(positions: Any, size: int) -> Any:
    """Patch positions as a read-only uint32 copy when they are integers that fit (a weight of at
    most 2^32 entries). The kernels read them in place; at S = 0.5, q = 4 a weight has about one
    patch per twelve weights, so int64 positions would take 0.64 bytes per weight, more than its
    coded planes, and uint32 ones take half that. Anything else is left for the kernels' checks to
    refuse."""
    arr = np.asarray(positions)
    if size > 1 << 32 or arr.ndim != 1 or arr.dtype.kind not in "iu":
        return positions
    if len(arr) and (arr.min() < 0 or arr.max() >= 1 << 32):
        return positions
    out = np.array(arr, dtype=np.uint32, copy=True)
    out.flags.writeable = False
    return out


def _rice_plan(gaps: np.ndarray) -> tuple[int, int]:
    """The Rice parameter with the fewest bits for these gaps, and that bit count."""
    if len(gaps) == 0:
        return 0, 0
    g = gaps.astype(np.uint64)
    # Beyond the bit length of the largest gap, a larger k only adds remainder bits.
    costs = [int((g >> np.uint64(k)).sum()) + len(g) * (k + 1) for k in range(int(g.max()).bit_length() + 1)]
    best = int(np.argmin(costs))
    return best, costs[best]


def _field(obj: Any, path: str, kind: type | tuple[type, ...]) -> Any:
    """obj[key] for a dotted path inside the stream header, type-checked."""
    cur = obj
    for key in path.split("."):
        if not isinstance(cur, dict) or key not in cur:
            raise StreamError(f"stream header lacks field {path!r}")
        cur = cur[key]
    if isinstance(cur, bool) or not isinstance(cur, kind):
        raise StreamError(f"stream header field {path!r} has the wrong type")
    return cur


def _int_field(header: dict, path: str, low: int, high: int) -> int:
    v = _field(header, path, int)
    if not low <= v <= high:
        raise StreamError(f"stream header field {path!r} = {v} is outside [{low}, {high}]")
    return v


def _check_keys(obj: Any, path: str, required: set[str], optional: set[str] = frozenset()) -> None:
    """Unknown keys are refused, so that a field added by a later format can never be ignored."""
    if not isinstance(obj, dict):
        raise StreamError(f"stream header {path!r} must be an object")
    missing, unknown = required - set(obj), set(obj) - required - optional
    if missing:
        raise StreamError(f"stream header {path!r} lacks {sorted(missing)}")
    if unknown:
        raise StreamError(f"stream header {path!r} has unknown fields {sorted(unknown)}")


def _parse_xor_bcq(stream: Stream) -> EncodedWeight:
    version, header, sections = stream.version, stream.header, stream.sections
    _check_keys(header, "header", {"shape", "dtype", "bits", "quant", "xor", "mask", "patches"}, {"info"})
    # Format 1 knew one value model (plain BCQ) and named only the fitting method; format 2 names both,
    # and only the value model has to be known to decode.
    quant_keys = {"method", "group_size", "scale_dtype"} | ({"value_model"} if version >= 2 else set())
    _check_keys(header["quant"], "quant", quant_keys)
    _check_keys(header["xor"], "xor", {"n_in", "n_out", "depth", "seed", "chain"}, {"layout", "group_bands"})
    _check_keys(header["patches"], "patches", {"coding", "counts", "rice_k"})
    shape = _field(header, "shape", list)
    if len(shape) != 2 or any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in shape):
        raise StreamError("stream header 'shape' must be two positive integers")
    rows, cols = shape
    if rows * cols > 1 << 40:
        raise StreamError(f"stream header shape {shape} is implausibly large")
    source_dtype = _field(header, "dtype", str)
    q = _int_field(header, "bits", 1, MAX_BITS)
    quant_method = _field(header, "quant.method", str)
    if version >= 2:
        model_id = _field(header, "quant.value_model", str)
        if model_id not in VALUE_MODELS:
            raise StreamError(
                f"stream uses unknown value model {model_id!r} (this sparsecodec knows {sorted(VALUE_MODELS)})"
            )
    else:
        model_id = "bcq"
        if quant_method not in ("greedy", "alternating"):
            raise StreamError(f"stream uses unknown quantisation method {quant_method!r}")
    model = VALUE_MODELS[model_id]
    group_size = _int_field(header, "quant.group_size", 1, cols)
    scale_dtype = _field(header, "quant.scale_dtype", str)
    if scale_dtype not in SCALE_DTYPES:
        raise StreamError(f"stream uses unknown scale dtype {scale_dtype!r}")
    n_in = _int_field(header, "xor.n_in", 1, 64)
    n_out = _int_field(header, "xor.n_out", 1, MAX_N_OUT)
    depth = _int_field(header, "xor.depth", 1, MAX_DEPTH)
    seed = _int_field(header, "xor.seed", 0, 2**64 - 1)
    chain = _int_field(header, "xor.chain", 64, MAX_CHAIN)
    if chain % 64:
        raise StreamError("stream header 'xor.chain' must be a multiple of 64")
    layout = header["xor"].get("layout", "linear")
    if layout == "scatter":
        group_bands = _int_field(header, "xor.group_bands", 1, MAX_GROUP_BANDS)
    elif layout == "linear" and "group_bands" not in header["xor"]:
        group_bands = 0
    else:
        raise StreamError(f"stream uses an unknown slice layout {layout!r}")
    try:
        _native.core().check_network(n_in, n_out, depth)
    except ValueError as exc:
        raise StreamError(f"stream has unsupported XOR parameters: {exc}") from None
    if _field(header, "patches.coding", str) != "rice-care-gaps":
        raise StreamError("stream uses an unknown patch coding")
    counts = _field(header, "patches.counts", list)
    rice_k = _field(header, "patches.rice_k", list)
    if len(counts) != q or len(rice_k) != q:
        raise StreamError("stream patch tables do not have one entry per plane")

    expected = set(model.section_tags()) | {"MASK", "CODE"} | {f"PAT{i}" for i in range(q)}
    if set(sections) != expected:
        raise StreamError(f"stream sections {sorted(sections)} do not match {sorted(expected)}")

    groups = groups_for(cols, group_size)
    try:
        params = model.from_sections(sections, rows, groups, q, scale_dtype)
    except ValueError as exc:
        raise StreamError(f"stream's {model_id} parameters are damaged: {exc}") from None
    with np.errstate(over="ignore", invalid="ignore"):
        scales, offsets = model.expand(params, q)
    # The largest value a group can decode to must be a finite float32 (so no sum overflows).
    bound = np.abs(scales.astype(np.float64)).sum(axis=-1)
    if offsets is not None:
        bound = bound + np.abs(offsets.astype(np.float64))
    if not (np.isfinite(bound).all() and (bound <= np.finfo(np.float32).max / 2).all()):
        raise StreamError(f"stream's {model_id} parameters decode to non-finite or overflowing values")

    mask = mask_from_stream((rows, cols), header.get("mask"), sections["MASK"], stream.words)
    n_slices = -(-(rows * cols) // n_out)
    code_bits = n_slices * n_in
    # Format 3 stores each plane as whole words (a view of them all when the buffer allows).
    whole_words = version >= ALIGNED_FROM_VERSION
    plane_bytes = words_for(code_bits) * 8 if whole_words else (code_bits + 7) // 8
    raw = sections["CODE"]
    if len(raw) != q * plane_bytes:
        raise StreamError("code section has the wrong size")
    try:
        if whole_words:
            code = stream.words(raw, q * plane_bytes * 8).reshape(q, -1)
            # each plane's bits past code_bits, inside its last word, must be zero
            if code_bits % 64 and (code[:, -1] >> np.uint64(code_bits % 64)).any():
                raise ValueError("nonzero padding bits after the last stored bit")
        else:
            planes = [raw[i * plane_bytes : (i + 1) * plane_bytes] for i in range(q)]
            code = np.stack([bytes_to_words(plane, code_bits) for plane in planes])
    except ValueError as exc:
        raise StreamError(f"code section is damaged: {exc}") from None

    kept = mask.kept
    patches = []
    core = _native.core()
    for i in range(q):
        count, k = counts[i], rice_k[i]
        if isinstance(count, bool) or not isinstance(count, int) or not 0 <= count <= kept:
            raise StreamError(f"patch count of plane {i} is invalid")
        if isinstance(k, bool) or not isinstance(k, int) or not 0 <= k <= 62:
            raise StreamError(f"Rice parameter of plane {i} is invalid")
        try:
            gaps = core.rice_decode(bytes(sections[f"PAT{i}"]), count, k, max(kept - 1, 0))
            care_index = np.cumsum(gaps.astype(np.int64) + 1) - 1
            if count and care_index[-1] >= kept:
                raise ValueError("patch indices run past the kept weights")
            patches.append(core.care_select(mask.bits(), rows * cols, care_index.astype(np.int64)))
        except ValueError as exc:
            raise StreamError(f"patch section of plane {i} is damaged: {exc}") from None

    info = header.get("info")
    quant_error = None
    if isinstance(info, dict):
        rmse, rel = info.get("quant_rmse"), info.get("quant_relative_error")
        if (
            isinstance(rmse, (int, float))
            and isinstance(rel, (int, float))
            and math.isfinite(rmse)
            and math.isfinite(rel)
        ):
            quant_error = {"rmse": float(rmse), "relative": float(rel)}
    specs = (
        QuantSpec(q, quant_method, group_size, scale_dtype, model_id),
        XorSpec(n_in, n_out, depth, seed, chain, layout, group_bands),
    )
    return EncodedWeight(
        (rows, cols),
        source_dtype,
        *specs,
        scales,
        mask,
        code,
        tuple(patches),
        quant_error,
        offsets,
        params if model.own_params else None,
    )
