"""Quantizers: each fitting method and each value model is one registered unit.

``quantize(weights, mask, bits, method=...)`` fits the kept weights with a registered fitting method
(``greedy``, ``alternating``, ``uniform``, and ``gptq``, which needs the Hessian of the layer's
inputs from calibration data) and returns a :class:`Quantized`: sign planes plus the
parameters of its value model (``bcq``, ``bcq-offset``, ``uniform``). A new method is a module here
with a ``@register_method`` function; a new value model is a :class:`ValueModel` registered with
``register_value_model`` (see :mod:`.base`).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from . import alternating, gptq, greedy, uniform, value_models  # noqa: F401  (register the built-in units)
from .base import (
    CALIBRATED_METHODS,
    MAX_BITS,
    METHODS,
    SCALE_DTYPES,
    VALUE_MODELS,
    Quantized,
    ValueModel,
    dequantize,
    groups_for,
    quantization_error,
    register_method,
    register_value_model,
    value_model,
)

__all__ = [
    "CALIBRATED_METHODS",
    "MAX_BITS",
    "METHODS",
    "SCALE_DTYPES",
    "VALUE_MODELS",
    "Quantized",
    "ValueModel",
    "dequantize",
    "groups_for",
    "quantization_error",
    "quantize",
    "register_method",
    "register_value_model",
    "value_model",
]


def quantize(
    weights: np.ndarray,
    mask: np.ndarray,
    bits: int,
    *,
    group_size: int | None = None,
    method: str = "greedy",
    iterations: int = 8,
    scale_dtype: str = "float32",
    hessian: np.ndarray | None = None,
    options: Any = None,
) -> Quantized:
    """Quantise the kept entries of a 2-D float array with ``bits`` sign planes.

    ``group_size=None`` (or any value >= cols) gives one scale group per row. Only kept weights
    (mask True) enter the fit; the bits of pruned positions are don't-care. A calibrated method
    (``gptq``) takes the Hessian (cols, cols) of the layer's inputs and its
    :class:`~sparsecodec.calibration.SolverOptions`; the others take neither.
    """
    w = np.asarray(weights)
    keep = np.asarray(mask, dtype=bool)
    if w.ndim != 2 or keep.shape != w.shape:
        raise ValueError(f"weights and mask must be 2-D arrays of one shape, got {w.shape} and {keep.shape}")
    if method not in METHODS:
        raise ValueError(f"method must be one of {tuple(METHODS)}, got {method!r}")
    if scale_dtype not in SCALE_DTYPES:
        raise ValueError(f"scale_dtype must be one of {tuple(SCALE_DTYPES)}, got {scale_dtype!r}")
    if isinstance(bits, bool) or not isinstance(bits, (int, np.integer)) or not 1 <= bits <= MAX_BITS:
        raise ValueError(f"bits must be an integer in [1, {MAX_BITS}], got {bits!r}")
    cols = w.shape[1]
    gs = cols if group_size is None else min(int(group_size), cols)
    if gs < 1:
        raise ValueError(f"group_size must be positive, got {group_size}")
    fit = METHODS[method]
    if method in CALIBRATED_METHODS:
        if hessian is None:
            raise ValueError(calibration_needed(f"method={method!r}"))
        return fit(w, keep, int(bits), gs, scale_dtype, iterations, hessian=hessian, options=options)
    if hessian is not None or options is not None:
        raise ValueError(f"method={method!r} does not use calibration data; hessian and options are for gptq")
    return fit(w, keep, int(bits), gs, scale_dtype, iterations)


def calibration_needed(what: str) -> str:
    """The message of the error raised when a calibrated choice is made without calibration data."""
    return (
        f"{what} needs calibration data: pass calibration=<batches of model inputs> to compress_ "
        "(or hessian=<the layer's input Hessian> to encode)"
    )
