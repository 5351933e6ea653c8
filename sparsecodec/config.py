"""How to compress a layer: one dataclass, JSON round-trip, shared by the layers and ``compress_``."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Any

from .calibration.second_order import SolverOptions
from .options import (
    CALIBRATED_PRUNINGS,
    LAYOUTS,
    PRUNINGS,
    STRATEGIES,
    calibrated_methods,
    mask_formats,
    methods,
    scale_dtypes,
)
from .quantizers import MAX_BITS
from .validation import as_choice, as_fraction, as_int

#: Solver damping (share of the mean Hessian diagonal) when nothing is pruned, as in GPTQ.
QUANTIZE_DAMP = SolverOptions.damp
#: Solver damping when the layer is pruned (see :class:`SQConfig`).
PRUNE_DAMP = 0.1

__all__ = ["STRATEGIES", "SQConfig"]


@dataclass(frozen=True)
class SQConfig:
    """Compression settings of one layer (see :func:`sparsecodec.encode` for their meaning).

    ``strategy`` is the matmul kernel the layer runs (``"auto"`` picks per batch size). ``version``
    is bumped when a field's meaning changes, so that stored configs keep their meaning. Fields left
    at None take encode's default, which may depend on the mask (``depth``, ``seed``, ``layout`` and
    ``mask_format`` differ when nothing is pruned).

    ``pruning`` says how ``sparsity`` picks the pruned weights (``"magnitude"``, or with calibration
    data ``"wanda"`` / ``"sparsegpt"``); ``damp``, ``act_order`` and ``clip_search`` tune the GPTQ /
    SparseGPT solver (:class:`sparsecodec.calibration.SolverOptions`) and matter only when a
    calibrated method or pruning is used. ``damp=None`` picks :data:`QUANTIZE_DAMP` when nothing is
    pruned and :data:`PRUNE_DAMP` when something is: the updates that compensate pruned weights are
    large and lean on the Hessian's off-diagonal, which a calibration set of a few hundred sentences
    estimates poorly (on all-MiniLM-L6-v2 at 50 % / 4 bits, 0.1 keeps cosine 0.888 against 0.880).
    """

    sparsity: float = 0.9
    bits: int = 2
    group_size: int | None = None
    method: str = "greedy"
    scale_dtype: str = "float16"
    depth: int | None = None
    n_in: int | None = None
    n_out: int | None = None
    seed: int | None = None
    layout: str | None = None
    mask_format: str | None = None
    rank: int | None = None
    tile: tuple[int, int] | None = None
    strategy: str = "auto"
    pruning: str = "magnitude"
    damp: float | None = None
    act_order: bool = True
    clip_search: bool = True
    version: int = 1

    def __post_init__(self) -> None:
        as_fraction(self.sparsity, "sparsity")
        as_int(self.bits, "bits", 1, MAX_BITS)
        as_choice(self.method, "method", methods())
        as_choice(self.scale_dtype, "scale_dtype", scale_dtypes())
        if self.layout is not None:
            as_choice(self.layout, "layout", LAYOUTS)
        if self.mask_format is not None:
            as_choice(self.mask_format, "mask_format", mask_formats())
        as_choice(self.strategy, "strategy", STRATEGIES)
        as_choice(self.pruning, "pruning", PRUNINGS)
        for flag in ("act_order", "clip_search"):
            if not isinstance(getattr(self, flag), bool):
                raise TypeError(f"{flag} must be True or False, got {getattr(self, flag)!r}")
        self.solver_options()  # checks damp
        if self.tile is not None:
            object.__setattr__(self, "tile", tuple(int(v) for v in self.tile))
        if self.mask_format != "lowrank" and (self.rank is not None or self.tile is not None):
            raise ValueError("rank and tile apply to mask_format='lowrank' only")
        if self.version != 1:
            raise ValueError(f"unsupported SQConfig version {self.version}")

    @property
    def needs_calibration(self) -> bool:
        """Whether the fitting method or the pruning needs calibration data."""
        return self.method in calibrated_methods() or (self.pruning in CALIBRATED_PRUNINGS and self.sparsity > 0)

    def data_free(self) -> SQConfig:
        """This config with its calibrated choices replaced by their data-free counterparts: GPTQ by
        round to nearest on the same grid, Wanda / SparseGPT by magnitude pruning. (For layers whose
        inputs are one-hot, an embedding, this is exact: their Hessian is diagonal, where GPTQ is
        round to nearest; ``compress_`` then weights the magnitudes by the calibration text's use of
        each row, which is what Wanda and SparseGPT reduce to there.)"""
        method = "uniform" if self.method in calibrated_methods() else self.method
        return dataclasses.replace(self, method=method, pruning="magnitude")

    def solver_options(self) -> SolverOptions:
        damp = self.damp
        if damp is None:
            damp = PRUNE_DAMP if self.sparsity > 0 else QUANTIZE_DAMP
        return SolverOptions(damp=damp, act_order=self.act_order, clip_search=self.clip_search)

    def encode_kwargs(self) -> dict[str, Any]:
        """The keyword arguments of :func:`sparsecodec.encode` this config stands for."""
        kw: dict[str, Any] = {
            "sparsity": self.sparsity,
            "bits": self.bits,
            "group_size": self.group_size,
            "method": self.method,
            "scale_dtype": self.scale_dtype,
            "depth": self.depth,
            "n_in": self.n_in,
            "n_out": self.n_out,
            "seed": self.seed,
            "layout": self.layout,
            "mask_format": self.mask_format,
        }
        if self.mask_format == "lowrank":
            kw.update(rank=self.rank, tile=self.tile)
        if self.needs_calibration:
            kw.update(pruning=self.pruning, solver=self.solver_options())
        return kw

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["tile"] = list(self.tile) if self.tile is not None else None
        return {"type": "SQConfig", **d}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SQConfig:
        if not isinstance(d, dict) or d.get("type") != "SQConfig":
            raise ValueError("not a serialised SQConfig (missing type: SQConfig)")
        fields = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - fields - {"type"}
        if unknown:
            raise ValueError(f"unknown SQConfig fields {sorted(unknown)}")
        return cls(**{k: v for k, v in d.items() if k != "type"})

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> SQConfig:
        return cls.from_dict(json.loads(text))
