"""Latency per layer when the weights come from memory, as in a model larger than the cache.

    python bench/matmul_stack.py           # about five minutes; writes a table into bench/README.md
    python bench/matmul_stack.py --quick   # 1024 x 1024, a smoke run

bench/matmul_latency.py calls one layer over and over, so every format whose weights fit in the
32 MiB last-level cache (int8 of a 4096 x 4096 layer: 16 MiB) is read from the cache on every call.
A network has many layers, each evicting the others. Here each implementation holds a stack of K
independent copies of the same layer, K chosen so that the int8 copies alone fill three times the
cache, and one timed pass calls every copy in turn with the same input; the time per layer is the
pass time over K. Ours keep K streams with their own run-time caches. Same layers, configurations,
peers, rounds and steady-state warm-up as bench/matmul_latency.py, at batch 1 and 8.
"""

from __future__ import annotations

import copy
import math
import sys
import time

import numpy as np
import torch
from matmul_latency import (
    PEERS,
    SCALE_DTYPE,
    WARM_SECONDS,
    _peers,
    encode_config,
    print_ratios,
    result_row,
    run,
    seconds_of,
)

import sparsecodec as sc
from sparsecodec.nn import SQLinear

BATCHES = [1, 8]
#: the layers larger than the cache (a stack of the small MiniLM layers would measure the same thing)
STACK_SHAPES = [(4096, 4096), (11008, 4096)]
CACHE_BYTES = 32 << 20  # last-level cache of the benchmark machine


def _stack_size(rows: int, cols: int) -> int:
    return max(2, math.ceil(3 * CACHE_BYTES / (rows * cols)))  # int8 copies: 3x the cache


def measure(rows: int, cols: int, sparsity: float, bits: int, group, rounds: int) -> list[dict]:
    rng = np.random.default_rng(0)
    enc = encode_config(rng.standard_normal((rows, cols)).astype(np.float32), sparsity, bits, group)
    w_hat = sc.decode(enc)
    k = _stack_size(rows, cols)
    stacks: dict[str, list] = {
        "ours": [SQLinear(copy.deepcopy(enc), strategy="auto_int8").eval() for _ in range(k)],
        "ours, exact": [SQLinear(copy.deepcopy(enc)).eval() for _ in range(k)],
    }
    for _ in range(k):
        calls, _memory = _peers(w_hat)
        for name in PEERS:
            stacks.setdefault(name, []).append(calls[name])
    results = []
    for batch in BATCHES:
        x = torch.from_numpy(rng.standard_normal((batch, cols)).astype(np.float32))
        reference = np.asarray(stacks["dense fp32"][0](x))
        for name, layers in stacks.items():  # warm up (caches built), check every copy's product
            for layer in layers:
                got = np.asarray(layer(x))
                tolerance = 0.05 if name in ("int8 dynamic", "ours") else 1e-3
                if np.abs(got - reference).max() > tolerance * (np.abs(reference).max() + 1e-30):
                    raise RuntimeError(f"{name} disagrees with the dense product")
        times: dict[str, list[float]] = {name: [] for name in stacks}
        for _ in range(rounds):
            for name, layers in stacks.items():
                warm_until = time.perf_counter() + WARM_SECONDS
                while time.perf_counter() < warm_until:
                    for layer in layers:
                        layer(x)
                for _ in range(3):
                    t0 = time.perf_counter()
                    for layer in layers:
                        layer(x)
                    times[name].append((time.perf_counter() - t0) / k)
        results += [
            result_row((rows, cols, sparsity, bits, batch), name, ts, stack=k, group=group)
            for name, ts in times.items()
        ]
        print_ratios(f"{rows}x{cols} S={sparsity} q={bits} B={batch} stack of {k}: ours, per layer", times)
    return results


def table(rows: list[dict]) -> str:
    def seconds(r: dict, impl: str) -> float:
        return seconds_of(rows, r["shape"], r["sparsity"], r["bits"], r["batch"], impl)

    lines = [
        "Median time per layer of ours (SQLinear, strategy auto_int8) over a pass through a stack of K copies, "
        "and each peer's time divided by ours (> 1: ours is faster); ours exact (strategy auto) beside it. "
        f"Weights encoded with {SCALE_DTYPE} scales.",
        "",
        "| layer | S, q | stack K | batch | ours, ms per layer | " + " | ".join(PEERS) + " | ours exact, ms |",
        "|---|---|---|---|---|" + "---|" * len(PEERS) + "---|",
    ]
    for r in rows:
        if r["impl"] != "ours":
            continue
        ratios = " | ".join(f"{seconds(r, p) / r['seconds']:.2f}x" for p in PEERS)
        lines.append(
            f"| {r['shape'][0]} x {r['shape'][1]} | {r['sparsity']}, {r['bits']} | {r['stack']} | {r['batch']} | "
            f"{r['seconds'] * 1e3:.3f} | {ratios} | {seconds(r, 'ours, exact') * 1e3:.3f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    return run(argv, __doc__, measure, table, "matmul_stack", rounds=3, shapes=STACK_SHAPES)


if __name__ == "__main__":
    sys.exit(main())
