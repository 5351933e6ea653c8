"""Latency of x @ W^T from the compressed form against the formats people run today.

    python bench/matmul_latency.py           # about twenty minutes; writes a table into bench/README.md
    python bench/matmul_latency.py --quick   # 1024 x 1024 and a MiniLM layer, a smoke run

Layers: 4096 x 4096 and 11008 x 4096 Gaussian (64 and 172 MiB as float32, past the 32 MiB last-level
cache), and the three layer shapes of all-MiniLM-L6-v2 (384 x 384, 1536 x 384, 384 x 1536), which fit
in cache; configs (S = 0.9, q = 1), (S = 0.5, q = 2), (S = 0.5, q = 4, group 128) and (S = 0, q = 4,
group 128), with float16 scales (the compressed layers' default, `SQConfig.scale_dtype`); batches 1,
8, 64, 256 and 512. In one run, in rounds over the implementations (so that a
burst of load on this shared machine hits every peer alike), each timed over a few back-to-back calls
after 50 ms of untimed ones (steady state):

* ours: `SQLinear` with strategy "auto_int8" (int8 tables or int8 tiles allowed, the counterpart of
  torch's dynamic int8) and with strategy "auto" (exact float32), built from the encoded weight; and
  `sc.matmul` with the "lut_stream" strategy (no run-time cache) at batches 1 and 8, for reference;
* dense fp32 `torch.nn.Linear` holding the same decoded weights;
* torch dynamic int8 (`quantize_dynamic`), torch CSR (`to_sparse_csr`), scipy CSR.

Times are medians over the rounds; the table reports each peer's time divided by ours (> 1: we are
faster), our int8 mode's relative error against the exact product beside torch int8's against the
dense one, and each implementation's run-time memory in bytes per weight. An implementation whose
warm-up call takes more than SLOW_SECONDS is timed once per round. Raw rows go to
bench/results/matmul_latency.json.
"""

from __future__ import annotations

import argparse
import copy
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
from sparsecodec.matmul import choose_strategy, int8_kernels_vectorised
from sparsecodec.nn import SQLinear

#: (sparsity, bits, group size)
CONFIGS = [(0.9, 1, None), (0.5, 2, None), (0.5, 4, 128), (0.0, 4, 128)]
SCALE_DTYPE = "float16"  # as SQConfig's default: what a converted model's layers hold
SHAPES = [(4096, 4096), (11008, 4096), (384, 384), (1536, 384), (384, 1536)]
QUICK_SHAPES = [(1024, 1024), (1536, 384)]
BATCHES = [1, 8, 64, 256, 512]
STREAMING_BATCHES = (1, 8)
PEERS = ["dense fp32", "int8 dynamic", "torch CSR", "scipy CSR"]
OURS = ["ours", "ours, exact"]
WARM_SECONDS = 0.05  # untimed calls before each implementation's timed ones, every round
SLOW_SECONDS = 1.0


def encode_config(w: np.ndarray, sparsity: float, bits: int, group: int | None):
    return sc.encode(w, sparsity=sparsity, bits=bits, group_size=group, scale_dtype=SCALE_DTYPE)


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


def measure(rows: int, cols: int, sparsity: float, bits: int, group, batches: list[int], rounds: int) -> list[dict]:
    rng = np.random.default_rng(0)
    w = rng.standard_normal((rows, cols)).astype(np.float32)
    enc = encode_config(w, sparsity, bits, group)
    w_hat = sc.decode(enc)
    layers = {"ours": SQLinear(copy.deepcopy(enc), strategy="auto_int8").eval(), "ours, exact": SQLinear(enc).eval()}
    calls, memory = _peers(w_hat)
    streaming_only = SQLinear(copy.deepcopy(enc), strategy="lut_stream").eval()  # nothing cached
    with torch.inference_mode():
        streaming_only(torch.zeros(1, cols))
    memory["ours, streaming"] = streaming_only.memory_nbytes()
    results = []
    for batch in batches:
        x = torch.from_numpy(rng.standard_normal((batch, cols)).astype(np.float32))
        x_np = x.numpy()
        impls = {name: (lambda x=x, m=m: m(x)) for name, m in layers.items()}
        if batch in STREAMING_BATCHES:
            impls["ours, streaming"] = lambda x_np=x_np: sc.matmul(x_np, enc, strategy="lut_stream")
        impls.update({name: (lambda x=x, f=f: f(x)) for name, f in calls.items()})
        reference = np.asarray(impls["dense fp32"]()).astype(np.float64)
        exact = np.asarray(impls["ours, exact"]()).astype(np.float64)
        errors, slow = {}, set()
        for name, f in impls.items():  # warm up (caches built), check every peer computes the same product
            t0 = time.perf_counter()
            got = np.asarray(f()).astype(np.float64)
            if time.perf_counter() - t0 > SLOW_SECONDS:
                slow.add(name)
            base = exact if name == "ours" else reference
            errors[name] = float(np.linalg.norm(got - base) / (np.linalg.norm(base) + 1e-30))
            if errors[name] > (0.05 if name in ("int8 dynamic", "ours") else 1e-4):
                raise RuntimeError(f"{name} disagrees with the dense product (relative error {errors[name]:.2e})")
        times: dict[str, list[float]] = {name: [] for name in impls}
        inner = max(2, 8 // (1 + batch // 64))
        for _ in range(rounds):
            for name, f in impls.items():
                # Steady state, as in a model made of one library: calls back to back for a while
                # first, so that the cores run at full clock and the other library's OpenMP workers
                # (torch and sparsecodec each keep a pool, whose workers spin after a call) have gone
                # to sleep, then the timed calls.
                warm_until = time.perf_counter() + (0.0 if name in slow else WARM_SECONDS)
                while name not in slow:
                    f()
                    if time.perf_counter() >= warm_until:
                        break
                for _ in range(1 if name in slow else inner):
                    t0 = time.perf_counter()
                    f()
                    times[name].append(time.perf_counter() - t0)
        for name, ts in times.items():
            layer = layers.get(name)
            mem = layer.memory_nbytes() if layer is not None else memory[name]
            results.append(
                result_row(
                    (rows, cols, sparsity, bits, batch),
                    name,
                    ts,
                    group=group,
                    # ours: the stream plus the caches its strategies have built so far
                    memory_bytes=mem,
                    strategy=choose_strategy(enc, batch, layer.strategy) if layer is not None else None,
                    rel_error=errors[name],
                )
            )
        print_ratios(
            f"{rows}x{cols} S={sparsity} q={bits} B={batch}: ours ({choose_strategy(enc, batch, 'auto_int8')})", times
        )
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

    def row_of(shape, s, q, b, impl):
        key = (list(shape), s, q, b, impl)
        return next(r for r in rows if (r["shape"], r["sparsity"], r["bits"], r["batch"], r["impl"]) == key)

    lines = [
        "Median time of ours (SQLinear, strategy auto_int8: int8 tables or int8 tiles, the counterpart of torch's "
        "dynamic int8) and each peer's time divided by ours (> 1: ours is faster); ours exact (strategy auto, "
        "float32) beside it. Errors: relative L2 error of our int8 mode against our exact product, and of torch's "
        f"int8 against dense fp32. Weights encoded with {SCALE_DTYPE} scales.",
        "",
        "| layer | S, q | batch | ours, ms (strategy) | dense fp32 | int8 dynamic | torch CSR | scipy CSR "
        "| ours exact, ms (strategy) | error ours int8 | error torch int8 | lut_stream, ms |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    keys = sorted(
        {(tuple(r["shape"]), r["sparsity"], r["bits"]) for r in rows},
        key=lambda k: (-k[0][0] * k[0][1], k[0], -k[1], k[2]),
    )
    batches = sorted({r["batch"] for r in rows})
    for shape, s, q in keys:
        for b in batches:
            ours = row_of(shape, s, q, b, "ours")
            exact = row_of(shape, s, q, b, "ours, exact")
            cells = [f"{time_of(list(shape), s, q, b, p) / ours['seconds']:.2f}x" for p in PEERS]
            streaming = [
                r
                for r in rows
                if (r["shape"], r["sparsity"], r["bits"], r["batch"], r["impl"])
                == (list(shape), s, q, b, "ours, streaming")
            ]
            lines.append(
                f"| {shape[0]} x {shape[1]} | {s}, {q} | {b} | {ours['seconds'] * 1e3:.3f} ({ours['strategy']}) | "
                + " | ".join(cells)
                + f" | {exact['seconds'] * 1e3:.3f} ({exact['strategy']}) | {ours['rel_error']:.4f} | "
                f"{row_of(shape, s, q, b, 'int8 dynamic')['rel_error']:.4f} | "
                + (f"{streaming[0]['seconds'] * 1e3:.2f}" if streaming else "")
                + " |"
            )
    lines += [
        "",
        "Run-time memory, bytes per weight (ours: `SQLinear.memory_nbytes()`, the layer's stream buffer, in "
        "which the parsed EncodedWeight reads its coded planes and bitmap mask, the weight's patch positions, "
        "float32 scales and expanded all-kept masks, and the caches its strategies built over all batch sizes):",
        "",
        "| layer | S, q | ours (auto_int8) | ours exact (auto) | ours, streaming | " + " | ".join(PEERS) + " |",
        "|---|---|---|---|---|" + "---|" * len(PEERS),
    ]
    for shape, s, q in keys:
        mem: dict = {}
        for r in rows:  # the largest figure over the batch sizes
            if (tuple(r["shape"]), r["sparsity"], r["bits"]) == (shape, s, q):
                mem[r["impl"]] = max(mem.get(r["impl"], 0), r["memory_bytes"])
        n = shape[0] * shape[1]
        lines.append(
            f"| {shape[0]} x {shape[1]} | {s}, {q} | "
            + " | ".join(f"{mem[k] / n:.3f}" for k in ["ours", "ours, exact", "ours, streaming", *PEERS])
            + " |"
        )
    return "\n".join(lines)


def run(argv: list[str] | None, doc: str, measure_one, make_table, name: str, rounds: int, shapes=None) -> int:
    """The command line of the matmul benchmarks: measure every shape and configuration with
    ``measure_one(rows, cols, sparsity, bits, group, rounds)``, print ``make_table(rows)``, and write it into
    bench/README.md (section ``name`` with dashes) and the raw rows to bench/results/``name``.json."""
    p = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="one 1024 x 1024 layer and three rounds, for a smoke run")
    p.add_argument("--rounds", type=int, default=rounds)
    p.add_argument("--no-write", action="store_true", help="print only; leave bench/README.md alone")
    a = p.parse_args(argv)
    if not int8_kernels_vectorised():
        print(
            "note: no AVX-512 here, so the int8 strategies are not candidates: 'ours' runs exact kernels",
            file=sys.stderr,
        )
    threads = sc.build_info()["threads"]
    torch.set_num_threads(threads)
    shapes = QUICK_SHAPES[:1] if a.quick and shapes else QUICK_SHAPES if a.quick else shapes or SHAPES
    rows = []
    with torch.inference_mode():
        for shape in shapes:
            for s, q, g in CONFIGS:
                rows += measure_one(*shape, s, q, g, 3 if a.quick else a.rounds)
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
        lambda *shape_config: measure(*shape_config[:5], BATCHES, shape_config[5]),
        table,
        "matmul_latency",
        rounds=5,
    )


if __name__ == "__main__":
    sys.exit(main())
