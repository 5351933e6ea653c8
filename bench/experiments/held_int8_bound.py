"""How fast "int8_tiles" could be if a weight held its decoded int8 tiles, as torch's int8 holds its
weight: an experiment, not a benchmark of the library.

Needs a build with ``held_int8_tiles.patch`` applied (beside this file): with ``SC_EXP_CACHED`` set,
that build decodes every tile of a weight once and keeps it. Usage, in that build's environment:

    python bench/experiments/held_int8_bound.py 4096x4096 0.5 4    # shape, sparsity, bits

The weight is encoded as bench/matmul_latency.py encodes that (sparsity, bits) config (its scale
groups and float16 scales), with torch's thread pool as large as ours, under inference mode.

For batches 8 and 64 it prints the median time (us) of torch's dynamic int8 (before and after ours),
"int8_tiles" as shipped, "lut_int8", and "int8_tiles" with held tiles, all in one process, and torch's
better time divided by the held tiles' time.
"""

from __future__ import annotations

import os
import sys
import warnings
from pathlib import Path

import numpy as np
import torch

import sparsecodec as sc

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from fit_cost_model import time_call  # noqa: E402  (the bench's own timing and encoder settings)
from matmul_latency import CONFIGS, encode_config  # noqa: E402


def median_us(call, rounds: int = 40) -> float:
    """Median microseconds of ``rounds`` timed calls, after the cost-model fit's warm-up."""
    return time_call(call, rounds) * 1e6


def main() -> None:
    shape = tuple(int(v) for v in sys.argv[1].split("x"))
    sparsity, bits = float(sys.argv[2]), int(sys.argv[3])
    # the scale groups matmul_latency.py gives this (sparsity, bits), else 128 columns
    group = next((g for s, q, g in CONFIGS if (s, q) == (sparsity, bits)), 128)
    torch.set_num_threads(sc.build_info()["threads"])  # torch's pool as large as ours, as in the bench
    rng = np.random.default_rng(0)
    enc = encode_config(rng.standard_normal(shape).astype(np.float32), sparsity, bits, group)
    dense = torch.nn.Linear(shape[1], shape[0], bias=False)
    with torch.no_grad():
        dense.weight.copy_(torch.from_numpy(sc.decode(enc)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        int8 = torch.ao.quantization.quantize_dynamic(torch.nn.Sequential(dense), {torch.nn.Linear}, dtype=torch.qint8)
    for batch in (8, 64):
        x = torch.from_numpy(rng.standard_normal((batch, shape[1])).astype(np.float32))
        with torch.inference_mode():
            row = time_batch(int8, enc, x)
        ratio = min(row["torch"], row["torch again"]) / row["held"]
        times = {k: round(v) for k, v in row.items()}
        print(shape, sparsity, bits, batch, times, f"torch / held {ratio:.2f}", flush=True)


def time_batch(int8: torch.nn.Module, enc: sc.EncodedWeight, x: torch.Tensor) -> dict[str, float]:
    """Median microseconds of each implementation on one batch x, in one burst each."""
    xn = x.numpy()
    row = {"torch": median_us(lambda: int8(x))}
    os.environ.pop("SC_EXP_CACHED", None)
    row["tiles"] = median_us(lambda: sc.matmul(xn, enc, strategy="int8_tiles"))
    row["lut_int8"] = median_us(lambda: sc.matmul(xn, enc, strategy="lut_int8"))
    os.environ["SC_EXP_CACHED"] = "1"
    row["held"] = median_us(lambda: sc.matmul(xn, enc, strategy="int8_tiles"))
    os.environ.pop("SC_EXP_CACHED", None)
    row["torch again"] = median_us(lambda: int8(x))
    return row


if __name__ == "__main__":
    main()
