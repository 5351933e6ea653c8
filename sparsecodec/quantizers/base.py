"""What every quantizer shares: the result type, the registries and the reference dequantisation.

A quantizer has two halves that are kept apart on purpose:

* the **value model** is what decoding needs: how the stored per-group parameters turn into the
  scales ``alpha`` (rows, groups, bits) and optional offsets ``beta`` (rows, groups) of
  ``w = sum_i alpha_i b_i + beta``, and how those parameters are written to and read from a stream;
* the **fitting method** is how the values were chosen (greedy, alternating, uniform ...). It is
  recorded in streams for information only: a stream whose fitting method this version does not know
  still decodes, as long as its value model is known.

The dequantised value is defined exactly, and every native kernel reproduces it bit for bit::

    acc = +alpha_0 if b_0 else -alpha_0           # float32
    acc = acc + (+alpha_i if b_i else -alpha_i)    # for i = 1 .. bits-1, in float32
    acc = acc + beta                               # only for value models with offsets
    w_hat = acc where kept else +0.0
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import Any, ClassVar

import numpy as np

SCALE_DTYPES = {"float32": np.float32, "float16": np.float16}
MAX_BITS = 8


def groups_for(cols: int, group_size: int) -> int:
    """Scale groups per row."""
    return -(-cols // group_size)


class ValueModel(ABC):
    """How one family of stored parameters decodes to per-group scales and offsets."""

    model_id: ClassVar[str]
    #: Names of the stored parameter arrays, in stream order.
    param_names: ClassVar[tuple[str, ...]]
    #: Whether the stored parameters are something else than the scales and offsets themselves (an
    #: EncodedWeight then keeps them beside the expanded scales, as ``value_params``).
    own_params: ClassVar[bool] = False

    @abstractmethod
    def expand(self, params: Mapping[str, np.ndarray], bits: int) -> tuple[np.ndarray, np.ndarray | None]:
        """Scales float32 (rows, groups, bits) and offsets float32 (rows, groups) or None."""

    @abstractmethod
    def stored_bits(self, rows: int, groups: int, bits: int, scale_dtype: str) -> int:
        """Bits the parameters cost in a stream."""

    @abstractmethod
    def sections(self, params: Mapping[str, np.ndarray], scale_dtype: str) -> list[tuple[str, bytes]]:
        """The stream sections holding the parameters (4-character tags)."""

    @abstractmethod
    def from_sections(
        self, sections: Mapping[str, bytes], rows: int, groups: int, bits: int, scale_dtype: str
    ) -> dict[str, np.ndarray]:
        """The parameters read back; raises ValueError when a section does not fit."""

    @abstractmethod
    def section_tags(self) -> tuple[str, ...]:
        """The tags :meth:`sections` writes."""


VALUE_MODELS: dict[str, ValueModel] = {}

#: Fitting methods by name: fn(w, keep, bits, group_size, scale_dtype, iterations) -> Quantized;
#: calibrated ones also take ``hessian=`` (the layer's input Hessian) and ``options=`` (SolverOptions).
FitFn = Callable[..., "Quantized"]
METHODS: dict[str, FitFn] = {}
#: The fitting methods that need calibration data (the Hessian of the layer's inputs).
CALIBRATED_METHODS: set[str] = set()


def register_value_model(model: ValueModel) -> ValueModel:
    """Make a value model known to encoders and to the stream reader under its ``model_id``."""
    VALUE_MODELS[model.model_id] = model
    return model


def register_method(name: str, *, calibrated: bool = False) -> Callable[[FitFn], FitFn]:
    """Decorator: register a fitting method under ``name`` (an ``encode(method=...)`` choice);
    ``calibrated`` methods need the Hessian of the layer's inputs."""

    def wrap(fn: FitFn) -> FitFn:
        METHODS[name] = fn
        if calibrated:
            CALIBRATED_METHODS.add(name)
        return fn

    return wrap


def value_model(model_id: str) -> ValueModel:
    try:
        return VALUE_MODELS[model_id]
    except KeyError:
        raise ValueError(f"unknown value model {model_id!r}; known: {sorted(VALUE_MODELS)}") from None


@dataclass(frozen=True)
class Quantized:
    """Sign planes and value-model parameters of a quantised matrix.

    ``planes`` is bool (bits, rows, cols), True meaning +1; ``params`` holds the value model's stored
    arrays (already rounded to ``scale_dtype``). ``scales`` / ``offsets`` are what decoding uses.
    """

    value_model: str
    method: str
    planes: np.ndarray
    group_size: int
    scale_dtype: str
    params: Mapping[str, np.ndarray]

    @property
    def bits(self) -> int:
        return int(self.planes.shape[0])

    @cached_property
    def _expanded(self) -> tuple[np.ndarray, np.ndarray | None]:
        return value_model(self.value_model).expand(self.params, self.bits)

    @property
    def scales(self) -> np.ndarray:
        """float32 (rows, groups, bits)."""
        return self._expanded[0]

    @property
    def offsets(self) -> np.ndarray | None:
        """float32 (rows, groups), or None for a value model without offsets."""
        return self._expanded[1]


def dequantize(
    scales: np.ndarray,
    planes: np.ndarray,
    mask: np.ndarray,
    group_size: int,
    offsets: np.ndarray | None = None,
) -> np.ndarray:
    """The exact float32 reconstruction defined in the module docstring."""
    bits, rows, cols = planes.shape
    per_col = np.repeat(np.asarray(scales, dtype=np.float32), group_size, axis=1)[:, :cols, :]  # (rows, cols, bits)
    acc = np.where(planes[0], per_col[..., 0], -per_col[..., 0])
    for i in range(1, bits):
        acc = acc + np.where(planes[i], per_col[..., i], -per_col[..., i])
    if offsets is not None:
        acc = acc + np.repeat(np.asarray(offsets, dtype=np.float32), group_size, axis=1)[:, :cols]
    return np.where(mask, acc, np.float32(0.0)).astype(np.float32, copy=False)


def quantization_error(weights: np.ndarray, approx: np.ndarray, mask: np.ndarray) -> dict[str, float]:
    """RMSE and relative L2 error of ``approx`` against ``weights`` over the kept entries."""
    keep = np.asarray(mask, dtype=bool)
    n = int(keep.sum())
    if n == 0:
        return {"rmse": 0.0, "relative": 0.0}
    diff = (np.asarray(weights, dtype=np.float64) - approx)[keep]
    ref = np.asarray(weights, dtype=np.float64)[keep]
    sq = float(np.dot(diff, diff))
    norm = float(np.dot(ref, ref))
    return {"rmse": float(np.sqrt(sq / n)), "relative": float(np.sqrt(sq / norm)) if norm > 0 else 0.0}


# ------------------------------------------------------------------------------------------------
# Helpers the fitting methods share. They work on grouped arrays (R, groups, group_size) in float64.

# Rows are processed in blocks so that the (bits, rows, groups, group_size) work arrays stay small.
BLOCK_ELEMENTS = 1 << 21


def scale_rounder(scale_dtype: str) -> Callable[[np.ndarray], np.ndarray]:
    """Rounds float64 values to the scale dtype (and back to float64)."""
    dtype = SCALE_DTYPES[scale_dtype]

    def round_scale(a: np.ndarray) -> np.ndarray:
        return np.asarray(a, dtype=np.float64).astype(dtype).astype(np.float64)

    return round_scale


def grouped(x: np.ndarray, group_size: int, fill: Any) -> np.ndarray:
    """(R, cols) -> (R, groups, group_size), padding the last group with ``fill``."""
    rows, cols = x.shape
    groups = groups_for(cols, group_size)
    pad = groups * group_size - cols
    if pad:
        x = np.concatenate([x, np.full((rows, pad), fill, dtype=x.dtype)], axis=1)
    return x.reshape(rows, groups, group_size)


def row_blocks(rows: int, groups: int, group_size: int, bits: int):
    """[r0, r1) blocks of rows whose work arrays stay near BLOCK_ELEMENTS."""
    block = max(1, BLOCK_ELEMENTS // max(1, groups * group_size * bits))
    for r0 in range(0, rows, block):
        yield r0, min(rows, r0 + block)


def ungroup_planes(signs: np.ndarray, cols: int) -> np.ndarray:
    """(bits, R, groups, group_size) -> (bits, R, cols)."""
    bits, r = signs.shape[:2]
    return signs.reshape(bits, r, -1)[:, :, :cols]


def reconstruct(alphas: np.ndarray, signs: np.ndarray, betas: np.ndarray | None = None) -> np.ndarray:
    """Grouped float64 values sum_i +-alpha_i (+ beta) (not the exact float32 definition)."""
    total = np.zeros(signs.shape[1:])
    for i in range(signs.shape[0]):
        total += np.where(signs[i], alphas[..., i, None], -alphas[..., i, None])
    if betas is not None:
        total += betas[..., None]
    return total
