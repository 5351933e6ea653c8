"""Latency of x @ W^T from the compressed form against the formats people run today.

    python bench/matmul_latency.py           # about ten minutes; writes a table into bench/README.md
    python bench/matmul_latency.py --quick   # 1024 x 1024, a smoke run

For 4096 x 4096 and 11008 x 4096 Gaussian layers (64 and 172 MiB as float32, past the 32 MiB
last-level cache) at (S = 0.9, q = 1) and (S = 0.5, q = 2), batch 1, 8, 64 and 256, it times in one
run, in rounds over the implementations (so that a burst of load on this shared machine hits every
peer alike), each timed over a few back-to-back calls after 50 ms of untimed ones (steady state):

* ours: `SQLinear` (strategy "auto") built from the encoded weight, and `sc.matmul` with the
  "lut_stream" strategy (no run-time cache) for reference;
* dense fp32 `torch.nn.Linear` holding the same decoded weights;
* torch dynamic int8 (`quantize_dynamic`), torch CSR (`to_sparse_csr`), scipy CSR.

Times are medians over the rounds; the table reports each peer's time divided by ours (> 1: we are
faster). Raw rows go to bench/results/matmul_latency.json.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
import warnings

import numpy as np
import scipy.sparse
import torch
from readme_tables import write_results, write_section

import sparsecodec as sc
from sparsecodec.matmul import cache_nbytes, choose_strategy
from sparsecodec.nn import SQLinear

CONFIGS = [(0.9, 1), (0.5, 2)]
BATCHES = [1, 8, 64, 256]
PEERS = ["dense fp32", "int8 dynamic", "torch CSR", "scipy CSR"]
WARM_SECONDS = 0.05  # untimed calls before each implementation's timed ones, every round


def _peers(w: np.ndarray) -> dict:
    rows, cols = w.shape
    dense = torch.nn.Linear(cols, rows, bias=False)
    with torch.no_grad():
        dense.weight.copy_(torch.from_numpy(w))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # quantize_dynamic's deprecation and sparse CSR's beta notices
        int8 = torch.ao.quantization.quantize_dynamic(torch.nn.Sequential(dense), {torch.nn.Linear}, dtype=torch.qint8)
        w_csr = torch.from_numpy(w).to_sparse_csr()
    s_csr = scipy.sparse.csr_matrix(w)
    return {
        "dense fp32": lambda x: dense(x),
        "int8 dynamic": lambda x: int8(x),
        "torch CSR": lambda x: torch.mm(w_csr, x.T).T,
        "scipy CSR": lambda x: (s_csr @ x.numpy().T).T,
    }, {
        "dense fp32": w.nbytes,
        "int8 dynamic": rows * cols + 8 * rows,
        "torch CSR": s_csr.nnz * (4 + 8) + (rows + 1) * 8,
        "scipy CSR": s_csr.nnz * (4 + 4) + (rows + 1) * 4,
    }


def measure(rows: int, cols: int, sparsity: float, bits: int, batches: list[int], rounds: int) -> list[dict]:
    rng = np.random.default_rng(0)
    w = rng.standard_normal((rows, cols)).astype(np.float32)
    enc = sc.encode(w, sparsity=sparsity, bits=bits)
    w_hat = sc.decode(enc)
    layer = SQLinear(enc).eval()
    layer_enc = layer.encoded_weights()[0]  # the layer's own parsed weight, which holds its caches
    calls, memory = _peers(w_hat)
    stream_bytes = len(enc.to_bytes())
    memory["ours, streaming"] = stream_bytes
    results = []
    for batch in batches:
        x = torch.from_numpy(rng.standard_normal((batch, cols)).astype(np.float32))
        x_np = x.numpy()
        impls = {
            "ours": lambda x=x: layer(x),
            "ours, streaming": lambda x_np=x_np: sc.matmul(x_np, enc, strategy="lut_stream"),
            **{name: (lambda x=x, f=f: f(x)) for name, f in calls.items()},
        }
        reference = np.asarray(impls["dense fp32"]())
        for name, f in impls.items():  # warm up (caches built), check every peer computes the same product
            got = np.asarray(f())
            scale = np.abs(reference).max() + 1e-30
            if np.abs(got - reference).max() > (0.05 if name == "int8 dynamic" else 1e-3) * scale:
                raise RuntimeError(f"{name} disagrees with the dense product")
        times: dict[str, list[float]] = {name: [] for name in impls}
        inner = max(2, 8 // (1 + batch // 64))
        for _ in range(rounds):
            for name, f in impls.items():
                # Steady state, as in a model made of one library: calls back to back for a while
                # first, so that the cores run at full clock and the other library's OpenMP workers
                # (torch and sparsecodec each keep a pool, whose workers spin after a call) have gone
                # to sleep, then the timed calls.
                warm_until = time.perf_counter() + WARM_SECONDS
                while True:
                    f()
                    if time.perf_counter() >= warm_until:
                        break
                for _ in range(inner):
                    t0 = time.perf_counter()
                    f()
                    times[name].append(time.perf_counter() - t0)
        strategy = choose_strategy(enc, batch)
        for name, ts in times.items():
            results.append(
                result_row(
                    (rows, cols, sparsity, bits, batch),
                    name,
                    ts,
                    # ours: the stream plus the caches its strategies have built so far
                    memory_bytes=stream_bytes + cache_nbytes(layer_enc) if name == "ours" else memory[name],
                    strategy=strategy if name == "ours" else ("lut_stream" if name == "ours, streaming" else None),
                )
            )
        print_ratios(f"{rows}x{cols} S={sparsity} q={bits} B={batch}: ours ({strategy})", times)
    return results


def result_row(case: tuple, impl: str, times: list[float], **extra) -> dict:
    """A raw result: the case (rows, cols, sparsity, bits, batch), the implementation, its median and
    best time, and whatever else the benchmark records."""
    rows, cols, sparsity, bits, batch = case
    return {
        "shape": [rows, cols],
        "sparsity": sparsity,
        "bits": bits,
        "batch": batch,
        "impl": impl,
        "seconds": statistics.median(times),
        "best": min(times),
        **extra,
    }


def print_ratios(label: str, times: dict[str, list[float]]) -> None:
    """One progress line: our median time and each peer's time over ours."""
    ours = statistics.median(times["ours"])
    ratios = " | ".join(f"{p} {statistics.median(times[p]) / ours:.2f}x" for p in PEERS)
    print(f"{label} {ours * 1e3:.2f} ms | {ratios}", flush=True)


def seconds_of(rows: list[dict], shape, sparsity: float, bits: int, batch: int, impl: str) -> float:
    """The median time of one implementation at one layer, configuration and batch of a run."""
    key = (list(shape), sparsity, bits, batch, impl)
    return next(r["seconds"] for r in rows if (r["shape"], r["sparsity"], r["bits"], r["batch"], r["impl"]) == key)


def table(rows: list[dict]) -> str:
    def time_of(shape, s, q, b, impl):
        return seconds_of(rows, shape, s, q, b, impl)

    lines = [
        "Median time of ours (SQLinear, strategy auto) and each peer's time divided by ours (> 1: ours is "
        "faster). Memory: bytes the layer keeps at run time (ours: the stream plus the caches its strategies "
        "built over all batch sizes).",
        "",
        "| layer | S, q | batch | ours, ms (strategy) | dense fp32 | int8 dynamic | torch CSR | scipy CSR "
        "| lut_stream, ms |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    keys = sorted({(tuple(r["shape"]), r["sparsity"], r["bits"]) for r in rows}, key=lambda k: (k[0], -k[1]))
    for shape, s, q in keys:
        for b in sorted({r["batch"] for r in rows}):
            ours_row = next(
                r
                for r in rows
                if (tuple(r["shape"]), r["sparsity"], r["bits"], r["batch"], r["impl"]) == (shape, s, q, b, "ours")
            )
            ours = ours_row["seconds"]
            cells = [f"{time_of(list(shape), s, q, b, p) / ours:.2f}x" for p in PEERS]
            lines.append(
                f"| {shape[0]} x {shape[1]} | {s}, {q} | {b} | {ours * 1e3:.2f} ({ours_row['strategy']}) | "
                + " | ".join(cells)
                + f" | {time_of(list(shape), s, q, b, 'ours, streaming') * 1e3:.2f} |"
            )
    lines += [
        "",
        "Run-time memory, MiB:",
        "",
        "| layer | S, q | ours | ours, streaming | " + " | ".join(PEERS) + " |",
        "|---|---|---|---|" + "---|" * len(PEERS),
    ]
    for shape, s, q in keys:
        mem: dict = {}
        for r in rows:  # the largest figure over the batch sizes
            if (tuple(r["shape"]), r["sparsity"], r["bits"]) == (shape, s, q):
                mem[r["impl"]] = max(mem.get(r["impl"], 0), r["memory_bytes"])
        lines.append(
            f"| {shape[0]} x {shape[1]} | {s}, {q} | "
            + " | ".join(f"{mem[k] / 2**20:.1f}" for k in ["ours", "ours, streaming", *PEERS])
            + " |"
        )
    return "\n".join(lines)


def run(argv: list[str] | None, doc: str, measure_one, make_table, name: str, rounds: int) -> int:
    """The command line of the matmul benchmarks: measure every shape and configuration with
    ``measure_one(rows, cols, sparsity, bits, rounds)``, print ``make_table(rows)``, and write it into
    bench/README.md (section ``name`` with dashes) and the raw rows to bench/results/``name``.json."""
    p = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="one 1024 x 1024 layer and three rounds, for a smoke run")
    p.add_argument("--rounds", type=int, default=rounds)
    p.add_argument("--no-write", action="store_true", help="print only; leave bench/README.md alone")
    a = p.parse_args(argv)
    threads = sc.build_info()["threads"]
    torch.set_num_threads(threads)
    shapes = [(1024, 1024)] if a.quick else [(4096, 4096), (11008, 4096)]
    rows = []
    with torch.inference_mode():
        for shape in shapes:
            for s, q in CONFIGS:
                rows += measure_one(*shape, s, q, 3 if a.quick else a.rounds)
    text = (
        make_table(rows) + f"\n\nMachine: {platform.machine()}, {threads} threads (ours and torch), SIMD "
        f"{sc.build_info()['simd_active']}, torch {torch.__version__}."
    )
    print(text)
    if not a.no_write:
        write_section(name.replace("_", "-"), text)
        write_results(name, {"machine": {"arch": platform.machine(), "threads": threads}, "rows": rows})
    return 0


def main(argv: list[str] | None = None) -> int:
    return run(
        argv,
        __doc__,
        lambda *shape_config: measure(*shape_config[:4], BATCHES, shape_config[4]),
        table,
        "matmul_latency",
        rounds=9,
    )


if __name__ == "__main__":
    sys.exit(main())
