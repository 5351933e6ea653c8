"""Plain reference quantisers, written apart from the fitting methods, for tests and benchmarks to
compare against (a peer's output, not a way to encode).

``rtn_asymmetric`` is round to nearest on an asymmetric uniform grid per group of columns, the
convention of GPTQ's quantiser: the range [min(w_min, 0), max(w_max, 0)] ([-1, 1] if it is empty),
step s = range / (2^q - 1) rounded to the scale dtype, integer zero point
z = clip(round(-min / s), 0, 2^q - 1), value s * (clip(round(w / s) + z, 0, 2^q - 1) - z).
"""

from __future__ import annotations

import numpy as np


def rtn_asymmetric(w: np.ndarray, bits: int, group_size: int | None, scale_dtype="float16") -> np.ndarray:
    """The round-to-nearest values of ``w`` (float64, same shape); ``group_size=None``: per row."""
    maxq = 2**bits - 1
    cols = w.shape[1]
    size = cols if group_size is None else group_size
    out = np.empty(w.shape, dtype=np.float64)
    for c0 in range(0, cols, size):
        g = w[:, c0 : c0 + size].astype(np.float64)
        lo = np.minimum(g.min(axis=1), 0.0)
        hi = np.maximum(g.max(axis=1), 0.0)
        flat = lo == hi
        lo[flat], hi[flat] = -1.0, 1.0
        step = ((hi - lo) / maxq).astype(scale_dtype).astype(np.float64)[:, None]
        zero = np.clip(np.round(-lo[:, None] / step), 0, maxq)
        out[:, c0 : c0 + size] = step * (np.clip(np.round(g / step) + zero, 0, maxq) - zero)
    return out
