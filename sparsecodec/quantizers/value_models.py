"""The value models: what a stream stores per scale group and how it decodes.

* ``"bcq"``: the scales alpha_1 .. alpha_q (binary-coding quantisation, no offset; stream format 1's
  only model);
* ``"bcq-offset"``: the scales and an offset beta;
* ``"uniform"``: an asymmetric uniform q-bit grid w = s (k - z), k in [0, 2^q - 1], stored as its step
  s (in the scale dtype) and integer zero point z (one byte). It is exactly the BCQ form with the
  scales s/2, s, 2s, ..., 2^(q-2) s and beta = s ((2^q - 1)/2 - z) (LUT-GEMM's mapping: the bit
  pattern of plane bits is k itself), so it runs on the same kernels; with float16 steps every
  partial sum is exact in float32 and the decoded value is s (k - z) exactly.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from .base import SCALE_DTYPES, ValueModel, register_value_model


def _le(dtype) -> np.dtype:
    return np.dtype(dtype).newbyteorder("<")


def _array_section(tag: str, values: np.ndarray, dtype) -> tuple[str, bytes]:
    return tag, np.ascontiguousarray(values).astype(_le(dtype)).tobytes()


def _read_array(sections: Mapping[str, bytes], tag: str, shape: tuple[int, ...], dtype) -> np.ndarray:
    raw = sections[tag]
    dt = _le(dtype)
    if len(raw) != int(np.prod(shape)) * dt.itemsize:
        raise ValueError(f"section {tag} has the wrong size")
    return np.frombuffer(raw, dtype=dt).reshape(shape)


def _finite(values: np.ndarray, what: str) -> np.ndarray:
    if not np.isfinite(values).all():
        raise ValueError(f"{what} hold non-finite values")
    return values


class BCQ(ValueModel):
    model_id = "bcq"
    param_names = ("scales",)

    def expand(self, params, bits):
        return np.asarray(params["scales"], dtype=np.float32), None

    def stored_bits(self, rows, groups, bits, scale_dtype):
        return rows * groups * bits * np.dtype(SCALE_DTYPES[scale_dtype]).itemsize * 8

    def section_tags(self):
        return ("SCAL",)

    def sections(self, params, scale_dtype):
        return [_array_section("SCAL", params["scales"], SCALE_DTYPES[scale_dtype])]

    def from_sections(self, sections, rows, groups, bits, scale_dtype):
        scales = _read_array(sections, "SCAL", (rows, groups, bits), SCALE_DTYPES[scale_dtype])
        return {"scales": _finite(scales.astype(np.float32), "scales")}


class BCQOffset(BCQ):
    model_id = "bcq-offset"
    param_names = ("scales", "offsets")

    def expand(self, params, bits):
        return np.asarray(params["scales"], dtype=np.float32), np.asarray(params["offsets"], dtype=np.float32)

    def stored_bits(self, rows, groups, bits, scale_dtype):
        return super().stored_bits(rows, groups, bits + 1, scale_dtype)

    def section_tags(self):
        return ("SCAL", "OFFS")

    def sections(self, params, scale_dtype):
        return super().sections(params, scale_dtype) + [
            _array_section("OFFS", params["offsets"], SCALE_DTYPES[scale_dtype])
        ]

    def from_sections(self, sections, rows, groups, bits, scale_dtype):
        out = super().from_sections(sections, rows, groups, bits, scale_dtype)
        offsets = _read_array(sections, "OFFS", (rows, groups), SCALE_DTYPES[scale_dtype])
        out["offsets"] = _finite(offsets.astype(np.float32), "offsets")
        return out


class Uniform(ValueModel):
    model_id = "uniform"
    own_params = True
    param_names = ("step", "zero")

    def expand(self, params, bits):
        step = np.asarray(params["step"], dtype=np.float32)
        zero = np.asarray(params["zero"], dtype=np.float64)
        powers = np.float32(2.0) ** np.arange(-1, bits - 1, dtype=np.float32)  # 1/2, 1, 2, ...
        scales = step[..., None] * powers  # exact: a power-of-two multiple of a float32
        offsets = (step.astype(np.float64) * (((1 << bits) - 1) / 2.0 - zero)).astype(np.float32)
        return scales.astype(np.float32), offsets

    def stored_bits(self, rows, groups, bits, scale_dtype):
        return rows * groups * (np.dtype(SCALE_DTYPES[scale_dtype]).itemsize * 8 + 8)

    def section_tags(self):
        return ("STEP", "ZERO")

    def sections(self, params, scale_dtype):
        return [
            _array_section("STEP", params["step"], SCALE_DTYPES[scale_dtype]),
            _array_section("ZERO", params["zero"], np.uint8),
        ]

    def from_sections(self, sections, rows, groups, bits, scale_dtype):
        step = _finite(
            _read_array(sections, "STEP", (rows, groups), SCALE_DTYPES[scale_dtype]).astype(np.float32), "steps"
        )
        if (step <= 0).any():
            raise ValueError("steps must be positive")
        zero = _read_array(sections, "ZERO", (rows, groups), np.uint8).astype(np.uint8)
        if (zero > (1 << bits) - 1).any():
            raise ValueError(f"zero points must lie in [0, {(1 << bits) - 1}]")
        return {"step": step, "zero": zero}


for _model in (BCQ(), BCQOffset(), Uniform()):
    register_value_model(_model)
