"""Shared inputs for the benchmarks (run with `pytest bench/`; see bench/README.md)."""

from __future__ import annotations

import contextlib

import numpy as np
import pytest

import sparsecodec as sc
from sparsecodec.formats.bitpack import pack_bits

# 64 MiB of float32: twice the 32 MiB last-level cache, so the layer measures memory, not cache.
ROWS, COLS = 4096, 4096
SPARSITY, BITS = 0.9, 2


@contextlib.contextmanager
def num_threads(n: int):
    before = sc.get_num_threads()
    sc.set_num_threads(n)
    try:
        yield
    finally:
        sc.set_num_threads(before)


@pytest.fixture(scope="session")
def layer():
    """A 4096 x 4096 Gaussian layer with its magnitude mask at S = 0.9 and its 2-bit BCQ planes."""
    rng = np.random.default_rng(0)
    w = rng.standard_normal((ROWS, COLS)).astype(np.float32)
    mask = sc.magnitude_mask(w, SPARSITY)
    quant = sc.bcq_quantize(w, mask, BITS)
    targets = np.stack([pack_bits(p) for p in quant.planes])
    return {"w": w, "mask": mask, "mask_bits": pack_bits(mask), "targets": targets}


@pytest.fixture(scope="session")
def encoded(layer):
    return {depth: sc.encode(layer["w"], mask=layer["mask"], bits=BITS, depth=depth) for depth in (1, 2)}
