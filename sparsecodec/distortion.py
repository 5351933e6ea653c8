"""Weight distortions: a weight replaced by its compressed version (pruned, then BCQ-quantised).

DeepTwist (:mod:`sparsecodec.deeptwist`) applies a :class:`Distortion` every few training steps. The
same object also encodes: ``decode(d.encode(w, step))`` equals ``d.apply(w, step)[0]`` bit for bit
(for 2-D weights; other shapes are compared after ``reshape(shape[0], -1)``), so the model that is
deployed is exactly the last distortion seen in training.

Weights of any shape are read as ``shape[0] x prod(shape[1:])`` (conv: out x in*kh*kw).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from .formats.xor_codec import EncodedWeight, encode
from .masks import BitmapMask, MaskFormat
from .masks.lowrank_search import lowrank_mask
from .masks.pruning import magnitude_mask
from .quantizers import dequantize, quantize

Schedule = float | Callable[[int], float]


def _at(schedule: Schedule, step: int) -> float:
    return float(schedule(step)) if callable(schedule) else float(schedule)


@dataclass(frozen=True)
class MagnitudePruning:
    """Keep the largest-magnitude weights; ``sparsity`` is a number or a function of the step
    (e.g. ``functools.partial(sparsecodec.cubic_sparsity, final_sparsity=0.9, begin_step=0, end_step=1000)``)."""

    sparsity: Schedule

    def mask(self, w2d: np.ndarray, step: int) -> MaskFormat:
        return BitmapMask.from_dense(magnitude_mask(w2d, _at(self.sparsity, step)))


@dataclass(frozen=True)
class LowRankPruning:
    """Keep the mask of a low-rank binary index chosen from ``|w|`` (see :func:`sparsecodec.lowrank_mask`)."""

    sparsity: Schedule
    rank: int
    tile: Any = None
    nmf_iterations: int = 50
    refine_rounds: int = 4

    def mask(self, w2d: np.ndarray, step: int) -> MaskFormat:
        return lowrank_mask(
            np.abs(w2d),
            _at(self.sparsity, step),
            self.rank,
            self.tile,
            nmf_iterations=self.nmf_iterations,
            refine_rounds=self.refine_rounds,
        )


@dataclass(frozen=True)
class Distortion:
    """Prune (optional) then BCQ-quantise the kept weights (optional, ``bits=None`` skips it)."""

    prune: MagnitudePruning | LowRankPruning | None = None
    bits: int | None = None
    group_size: int | None = None
    method: str = "greedy"
    scale_dtype: str = "float32"

    def keep_mask(self, weight: np.ndarray, step: int = 0) -> MaskFormat:
        w2d = _as_2d(weight)
        if self.prune is None:
            return BitmapMask.from_dense(np.ones(w2d.shape, bool))
        return self.prune.mask(w2d, step)

    def apply(self, weight: np.ndarray, step: int = 0, mask: MaskFormat | None = None) -> tuple[np.ndarray, MaskFormat]:
        """The distorted weight (same shape, float32) and the keep-mask it used (``mask``, if given,
        instead of choosing one)."""
        w2d = _as_2d(weight)
        mask = self.keep_mask(w2d, step) if mask is None else _check_mask(mask, w2d.shape)
        keep = mask.to_dense()
        if self.bits is None:
            out = np.where(keep, w2d, np.float32(0)).astype(np.float32)
        else:
            q = quantize(
                w2d, keep, self.bits, group_size=self.group_size, method=self.method, scale_dtype=self.scale_dtype
            )
            out = dequantize(q.scales, q.planes, keep, q.group_size, q.offsets)
        return out.reshape(np.shape(weight)), mask

    def encode(
        self, weight: np.ndarray, step: int = 0, mask: MaskFormat | None = None, **xor_options: Any
    ) -> EncodedWeight:
        """The XOR-coded form of :meth:`apply` (its 2-D view); ``xor_options`` go to :func:`encode`."""
        if self.bits is None:
            raise ValueError("a distortion without bits (no quantisation) cannot be XOR-encoded")
        w2d = _as_2d(weight)
        mask = self.keep_mask(w2d, step) if mask is None else _check_mask(mask, w2d.shape)
        return encode(
            w2d,
            mask=mask,
            bits=self.bits,
            group_size=self.group_size,
            method=self.method,
            scale_dtype=self.scale_dtype,
            **xor_options,
        )


def _check_mask(mask: MaskFormat, shape: tuple[int, ...]) -> MaskFormat:
    if not isinstance(mask, MaskFormat) or mask.shape != tuple(shape):
        raise ValueError(f"mask must be a stored mask of shape {tuple(shape)}")
    return mask


def _as_2d(weight: np.ndarray) -> np.ndarray:
    w = np.asarray(weight, dtype=np.float32)
    if w.ndim < 2:
        raise ValueError(f"weights must have at least 2 dimensions, got shape {w.shape}")
    return w.reshape(w.shape[0], -1)
