"""What a keep-mask costs in each index format, in bits.

Formats (nnz kept entries of an m x n matrix):

* ``bitmap``: one bit per entry, m n.
* ``csr``: 32-bit row pointers (m + 1 of them) and a ceil(log2 n)-bit column index per kept entry.
* ``relative4`` / ``relative5``: Deep Compression's relative index: the distance from the previous
  kept entry in row-major order (the first from position -1), stored as distance - 1 in b bits; a
  distance above 2^b needs filler entries (zeros stored as if kept), each one more index slot and
  one more weight code. The bits counted are index bits, nnz + fillers slots; ``fillers`` is given.
* ``lowrank``: the factors of a :class:`LowRankMask` (only for such a mask).
* ``entropy``: m n H(S), the cost of an ideal code for an i.i.d. mask of this sparsity (a bound for
  unstructured masks, not a format).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .base import MaskFormat
from .lowrank import LowRankMask


def index_costs(mask: Any) -> dict[str, dict[str, float]]:
    """Bits, bits per weight and bits per kept weight of ``mask`` in every index format.

    ``mask`` is a boolean array (True = kept, any number of dimensions >= 2, read as
    ``shape[0] x prod(shape[1:])``) or a stored mask (:class:`BitmapMask`, :class:`LowRankMask`).
    """
    if isinstance(mask, MaskFormat):
        keep = mask.to_dense()
    else:
        arr = np.asarray(mask)
        if arr.dtype != bool:
            raise TypeError(f"mask must be a boolean array or a stored mask, got dtype {arr.dtype}")
        if arr.ndim < 2:
            raise ValueError(f"mask must have at least 2 dimensions, got shape {arr.shape}")
        keep = arr.reshape(arr.shape[0], -1)
    m, n = keep.shape
    size = m * n
    nnz = int(keep.sum())
    flat = np.flatnonzero(keep.reshape(-1))
    distances = np.diff(flat, prepend=-1)

    bits: dict[str, dict[str, float]] = {}

    def add(name: str, total: float, **extra: float) -> None:
        bits[name] = {
            "bits": float(total),
            "bpw": total / size,
            "bits_per_kept": total / nnz if nnz else math.inf,
            **extra,
        }

    add("bitmap", size)
    add("csr", 32 * (m + 1) + nnz * max(1, math.ceil(math.log2(n))))
    for b in (4, 5):
        fillers = int(((distances - 1) // (1 << b)).sum()) if nnz else 0
        add(f"relative{b}", b * (nnz + fillers), fillers=fillers)
    if isinstance(mask, LowRankMask):
        add("lowrank", mask.stored_bits(), rank=mask.rank)
    s = 1.0 - nnz / size
    entropy = 0.0 if s in (0.0, 1.0) else -(s * math.log2(s) + (1 - s) * math.log2(1 - s))
    add("entropy", entropy * size)
    return bits
