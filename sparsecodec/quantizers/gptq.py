"""GPTQ (Frantar et al. 2022): the uniform grid of ``uniform``, with each column's rounding error
moved onto the columns not yet quantised through the inverse Hessian of the layer's inputs.

The result lies on the same asymmetric grid as round to nearest (a step and an integer zero point
per group), so it is stored exactly by the ``uniform`` value model and decodes with every kernel.
Pruned positions of the keep-mask are set to exactly zero and their error is compensated too. The
solver is :func:`sparsecodec.calibration.second_order.solve`.
"""

from __future__ import annotations

import numpy as np

from .base import SCALE_DTYPES, Quantized, register_method
from .uniform import code_planes


@register_method("gptq", calibrated=True)
def quantize_gptq(w, keep, bits, group_size, scale_dtype, iterations, *, hessian, options=None) -> Quantized:
    from ..calibration.second_order import UniformGrid, solve

    result = solve(w, hessian, keep=keep, grid=UniformGrid(bits, group_size, scale_dtype), options=options)
    return quantized_on_grid(result.codes, result.step, result.zero, bits, group_size, scale_dtype, "gptq")


def quantized_on_grid(codes, step, zero, bits: int, group_size: int, scale_dtype: str, method: str) -> Quantized:
    """A :class:`Quantized` of the ``uniform`` value model from grid codes (R, C), steps and zero
    points (R, G) as a solver produced them."""
    step = np.asarray(step).astype(SCALE_DTYPES[scale_dtype]).astype(np.float32)
    params = {"step": step, "zero": np.asarray(zero).astype(np.uint8)}
    return Quantized("uniform", method, code_planes(np.asarray(codes), bits), group_size, scale_dtype, params)
