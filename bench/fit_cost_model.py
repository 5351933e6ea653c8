"""Refit the cost model of ``strategy="auto"`` on this machine (sparsecodec/cost_model.json).

    python bench/fit_cost_model.py           # about six minutes
    python bench/fit_cost_model.py --quick   # a smoke run on small layers (does not overwrite the table)

Every matmul strategy that ``auto`` / ``auto_int8`` chooses among is timed on a grid of layers
(all-MiniLM-L6-v2's 384 x 384, 1536 x 384 and 384 x 1536, which fit in cache, up to 4096 x 4096),
sparsities, bits, scale groups and batch sizes, each in its own steady-state burst (50 ms of
untimed calls, then the median of a few). Per strategy, the non-negative coefficients of its
features (sparsecodec.cost_model.features) are fitted to minimise the squared *relative* error of
the predicted times, and written with the fit's error and the machine to the table.
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import statistics
import sys
import time

import numpy as np
from scipy.optimize import nnls

import sparsecodec as sc
from sparsecodec import cost_model
from sparsecodec.matmul import candidate_strategies, int8_kernels_vectorised

SHAPES = [(384, 384), (1536, 384), (384, 1536), (1024, 1024), (4096, 4096)]
CONFIGS = [(0.9, 1, None), (0.5, 2, None), (0.5, 4, 128), (0.0, 4, 128), (0.0, 8, 128)]
BATCHES = [1, 4, 16, 64, 256, 512]
QUICK = ([(384, 384), (256, 1024)], CONFIGS[:3], [1, 8, 64])
WARM_SECONDS = 0.05
SHAPE_KEYS = ("rows", "cols", "kept", "bits", "batch", "slices")  # what cost_model.features takes


def time_call(f, calls: int = 5) -> float:
    """Median seconds of ``calls`` back-to-back calls after WARM_SECONDS of untimed ones."""
    until = time.perf_counter() + WARM_SECONDS
    while time.perf_counter() < until:
        f()
    times = []
    for _ in range(calls):
        t0 = time.perf_counter()
        f()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def measure(shapes, configs, batches) -> list[dict]:
    rng = np.random.default_rng(0)
    rows_out = []
    for rows, cols in shapes:
        w = rng.standard_normal((rows, cols)).astype(np.float32)
        for sparsity, bits, group in configs:
            enc = sc.encode(w, sparsity=sparsity, bits=bits, group_size=group)
            for batch in batches:
                x = rng.standard_normal((batch, cols)).astype(np.float32)
                strategies = candidate_strategies(enc, "auto_int8")
                # two rounds, the second in reverse order, keeping each strategy's faster median:
                # a burst that shares the cores with another pool's spinning threads (torch's BLAS
                # after "dense") can lose whole scheduler ticks, which would skew the fit
                seconds_of = {s: float("inf") for s in strategies}
                for order in (strategies, strategies[::-1]):
                    for strategy in order:
                        seconds = time_call(lambda s=strategy, x=x: sc.matmul(x, enc, strategy=s))  # noqa: B023
                        seconds_of[strategy] = min(seconds_of[strategy], seconds)
                for strategy, seconds in seconds_of.items():
                    rows_out.append(
                        {
                            "strategy": strategy,
                            "rows": rows,
                            "cols": cols,
                            "kept": int(enc.mask.kept),
                            "slices": enc.n_slices,
                            "bits": bits,
                            "group": group,
                            "sparsity": sparsity,
                            "batch": batch,
                            "ns": seconds * 1e9,
                        }
                    )
                print(
                    f"{rows}x{cols} S={sparsity} q={bits} g={group} B={batch}: "
                    + ", ".join(f"{r['strategy']} {r['ns'] / 1e3:.0f} us" for r in rows_out[-len(strategies) :]),
                    flush=True,
                )
    return rows_out


def fit(samples: list[dict]) -> dict:
    out = {}
    for strategy in sorted({s["strategy"] for s in samples}):
        rows = [s for s in samples if s["strategy"] == strategy]
        shape_of = lambda s: {k: s[k] for k in SHAPE_KEYS}  # noqa: E731
        names = list(cost_model.features(strategy, **shape_of(rows[0])))
        a = np.array([[cost_model.features(strategy, **shape_of(s))[n] for n in names] for s in rows], dtype=np.float64)
        t = np.array([s["ns"] for s in rows])
        # relative error: every row divided by its measured time
        coef, _ = nnls(a / t[:, None], np.ones(len(t)))
        rel = a @ coef / t - 1.0
        out[strategy] = {
            "coefficients": {n: float(c) for n, c in zip(names, coef, strict=True)},
            "samples": len(rows),
            "median_abs_rel_error": float(np.median(np.abs(rel))),
            "max_abs_rel_error": float(np.max(np.abs(rel))),
        }
        fitted = out[strategy]
        print(f"{strategy}: median |error| {fitted['median_abs_rel_error']:.0%}, max {fitted['max_abs_rel_error']:.0%}")
    return out


def choice_agreement(samples: list[dict], strategies: dict) -> dict:
    """How often the fitted model picks the measured fastest strategy, and the time lost when not."""
    cases: dict = {}
    for s in samples:
        cases.setdefault((s["rows"], s["cols"], s["sparsity"], s["bits"], s["group"], s["batch"]), []).append(s)
    right, lost = 0, []
    for group in cases.values():
        best = min(group, key=lambda s: s["ns"])

        def predicted(s):
            f = cost_model.features(s["strategy"], **{k: s[k] for k in SHAPE_KEYS})
            return sum(strategies[s["strategy"]]["coefficients"][k] * v for k, v in f.items())

        chosen = min(group, key=predicted)
        right += chosen is best
        lost.append(chosen["ns"] / best["ns"])
    return {
        "cases": len(cases),
        "fastest_chosen": right,
        "median_slowdown": float(np.median(lost)),
        "max_slowdown": float(max(lost)),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small layers; prints the fit, keeps the table")
    args = parser.parse_args(argv)
    if not int8_kernels_vectorised():
        # the table must cover the int8 strategies, which are candidates only at the AVX-512 level
        print(
            f"the cost model is fitted at the AVX-512 level; this run has {sc.build_info()['simd_active']}",
            file=sys.stderr,
        )
        return 1
    shapes, configs, batches = QUICK if args.quick else (SHAPES, CONFIGS, BATCHES)
    samples = measure(shapes, configs, batches)
    strategies = fit(samples)
    agreement = choice_agreement(samples, strategies)
    print(
        f"the model picks the measured fastest strategy in {agreement['fastest_chosen']} of {agreement['cases']} "
        "cases; "
        f"median slowdown {agreement['median_slowdown']:.2f}x, worst {agreement['max_slowdown']:.2f}x"
    )
    if args.quick:
        return 0
    info = sc.build_info()
    result = {
        "note": "fitted by bench/fit_cost_model.py; nanoseconds per unit of each feature (sparsecodec.cost_model)",
        "date": datetime.date.today().isoformat(),
        "machine": f"{platform.machine()}, {info['threads']} threads, SIMD {info['simd_active']}",
        "choice": agreement,
        "strategies": strategies,
    }
    cost_model.TABLE_PATH.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {cost_model.TABLE_PATH}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
