"""Throughput of the XOR-coded format on a 4096 x 4096 layer (S = 0.9, q = 2).

The yardstick, a numpy copy of the same dense float32 layer, runs in the same session; report.py
turns the timings into ratios. Encode is measured on one thread (the target is per plane per core);
decode on both cores.
"""

from __future__ import annotations

import numpy as np
import pytest

import sparsecodec as sc
from sparsecodec._native import core

from conftest import BITS, COLS, ROWS, num_threads

WEIGHTS = ROWS * COLS


@pytest.mark.parametrize("depth", [1, 2])
def test_encode_planes_one_thread(benchmark, layer, encoded, depth):
    enc = encoded[depth]
    benchmark.group = "encode (XOR planes, 1 thread)"
    benchmark.extra_info.update(weights=WEIGHTS, planes=BITS, threads=1, depth=depth)

    def run():
        core().encode_planes(layer["targets"], layer["mask_bits"], WEIGHTS, *enc.xor.native_args())

    with num_threads(1):
        benchmark.pedantic(run, rounds=3, iterations=1, warmup_rounds=0)


@pytest.mark.parametrize("depth", [1, 2])
def test_encode_full_two_threads(benchmark, layer, depth):
    benchmark.group = "encode (prune + BCQ + XOR, 2 threads)"
    benchmark.extra_info.update(weights=WEIGHTS, planes=BITS, threads=2, depth=depth)
    with num_threads(2):
        benchmark.pedantic(lambda: sc.encode(layer["w"], sparsity=0.9, bits=BITS, depth=depth), rounds=2, iterations=1)


@pytest.mark.parametrize("depth", [1, 2])
def test_decode_dense_two_threads(benchmark, encoded, depth):
    """Decode into a freshly allocated array (pays the page faults of 64 MiB of new memory)."""
    enc = encoded[depth]
    benchmark.group = "decode, new output"
    benchmark.extra_info.update(weights=WEIGHTS, threads=2, depth=depth)
    with num_threads(2):
        benchmark.pedantic(lambda: sc.decode(enc), rounds=15, iterations=1, warmup_rounds=2)


@pytest.mark.parametrize("depth", [1, 2])
def test_decode_dense_into_buffer_two_threads(benchmark, encoded, depth):
    """Decode into a reused array, as a layer that decodes its weights repeatedly would."""
    enc = encoded[depth]
    out = np.empty(enc.shape, np.float32)
    benchmark.group = "decode, reused output"
    benchmark.extra_info.update(weights=WEIGHTS, threads=2, depth=depth)
    with num_threads(2):
        benchmark.pedantic(lambda: sc.decode(enc, out=out), rounds=15, iterations=1, warmup_rounds=2)


def test_numpy_copy_yardstick(benchmark, layer):
    benchmark.group = "decode, new output"
    benchmark.extra_info.update(weights=WEIGHTS, threads=1, yardstick=True)
    w = layer["w"]
    benchmark.pedantic(lambda: w.copy(), rounds=15, iterations=1, warmup_rounds=2)


def test_numpy_copyto_yardstick(benchmark, layer):
    benchmark.group = "decode, reused output"
    benchmark.extra_info.update(weights=WEIGHTS, threads=1, yardstick=True)
    w = layer["w"]
    out = np.empty_like(w)
    benchmark.pedantic(lambda: np.copyto(out, w), rounds=15, iterations=1, warmup_rounds=2)
