"""The cost model behind ``strategy="auto"``: predicted nanoseconds of each matmul strategy.

Each strategy's time is modelled as linear in a few quantities of the weight and the batch
(:func:`features`: per call, per position, per lookup, per multiply-add, per input ...), with
non-negative coefficients fitted to measurements on one machine by ``bench/fit_cost_model.py``,
which writes them, with the machine and the fit's error, to ``cost_model.json`` beside this file.
Only the coefficients are data; the features are code, so a refit never changes what is modelled.
"""

from __future__ import annotations

import functools
import json
import math
from pathlib import Path
from typing import Any

#: Where the fitted coefficients live.
TABLE_PATH = Path(__file__).with_name("cost_model.json")


def features(strategy: str, *, rows: int, cols: int, kept: int, bits: int, batch: int, slices: int) -> dict[str, float]:
    """The quantities ``strategy``'s time is linear in, for a (rows, cols) weight with ``kept`` kept
    weights, ``bits`` planes and ``slices`` XOR-coded slices per plane, at this batch size."""
    positions, lookups = rows * cols, rows * cols * (bits + 1)
    blocks = -(-batch // 8)  # vectors of 8 lanes
    many = batch > 1
    inputs = batch * cols if many else 0  # x laid out by lanes (or quantised) once per call
    if strategy == "dense":
        return {"call": 1.0, "positions": positions, "macs": positions * batch}
    if strategy == "sparse":
        return {
            "call": 1.0,
            "kept_batch1": kept if not many and bits > 1 else 0.0,
            "kept_signed_batch1": kept if not many and bits == 1 else 0.0,
            "kept_passes": kept * -(-blocks // 12) if many else 0.0,  # a pass holds up to 96 lanes
            "kept_blocks": kept * blocks if many else 0.0,
            "positions_blocks": positions * blocks if many else 0.0,
            "inputs": inputs,
        }
    if strategy == "lut":
        return {
            "call": 1.0,
            "lookups_batch1": lookups if not many else 0.0,
            "lookups_blocks": lookups * blocks if many else 0.0,
            "lookups_batched": lookups if many else 0.0,
            "inputs": inputs,
        }
    if strategy == "lut_stream":
        # the lut kernel on planes decoded tile by tile on every call: the XOR decode costs per
        # position and per slice of every plane (fewer, longer slices decode faster per position)
        lut = features("lut", rows=rows, cols=cols, kept=kept, bits=bits, batch=batch, slices=slices)
        return {**lut, "decoded_positions": positions * bits, "decoded_slices": slices * bits}
    if strategy == "lut_int8":
        passes = -(-batch // _lanes(bits))  # passes of the kernel over each block's indices
        planes = bits + (1 if kept < positions else 0)  # the mask's lookups are skipped when all kept
        int8_lookups = positions * planes
        return {
            "call": 1.0,
            "lookups_lanes": int8_lookups * batch,
            "lookups_passes": int8_lookups * passes,
            "tables": batch * cols,
        }
    if strategy == "int8_tiles":
        # the AVX-512 decode transposes four planes whatever q is: its cost is per weight
        return {"call": 1.0, "decode": positions, "macs": positions * batch, "inputs": batch * cols}
    raise ValueError(f"no cost model for strategy {strategy!r}")


@functools.cache
def _lanes(bits: int) -> int:
    """Batch lanes the AVX-512 int8-table kernel runs per pass (csrc/lut_int8.h)."""
    from . import _native

    return int(_native.core().lut_int8_lanes(bits))


@functools.cache
def table() -> dict[str, Any]:
    """The fitted coefficients and what they were fitted on (``cost_model.json``)."""
    return json.loads(TABLE_PATH.read_text())


def predicted_ns(strategy: str, **shape: int) -> float:
    """Predicted time of one call of ``strategy`` (see :func:`features` for the arguments)."""
    coef = table()["strategies"][strategy]["coefficients"]
    feats = features(strategy, **shape)
    missing = set(feats) - set(coef)
    if missing:
        raise ValueError(f"cost_model.json has no coefficient for {sorted(missing)} of {strategy!r}: refit it")
    value = sum(coef[k] * v for k, v in feats.items())
    return value if math.isfinite(value) else math.inf
