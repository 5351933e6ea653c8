"""Benchmarks of the low-rank binary index.

    python bench/lowrank_index.py        # about two minutes; writes two tables into bench/README.md

1. Retained magnitude against index bits: sum |W| kept by the low-rank mask over sum |W| kept by
   plain magnitude pruning at the same sparsity (S = 0.9), per rank and tiling, for a Gaussian
   800 x 500 matrix and for the trained 128 x 1024 layer (fc1) of the digits CNN. Tilings are
   compared at equal index bits: t x t tiles of rank k/t cost exactly what rank k costs untiled.
2. Bits per weight of every index format for a 4096 x 4096 layer pruned to S = 0.9: bitmap, CSR,
   Deep Compression's relative index (4 and 5 bits), low-rank masks of a few ranks and tilings
   (chosen by the search on the layer, so their sparsity is the achieved one), and the entropy of an
   i.i.d. mask for reference.
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np
from readme_tables import write_results, write_section

import sparsecodec as sc

SPARSITY = 0.9


def trained_fc1() -> np.ndarray:
    import torch

    from sparsecodec.digits import DigitsCNN, load_digits_split, train

    torch.manual_seed(0)
    model = DigitsCNN()
    train(model, load_digits_split(), 30)
    return model.fc1.weight.detach().numpy().astype(np.float64)


def retained_rows(name: str, w: np.ndarray, configs) -> list[dict]:
    a = np.abs(w)
    rows = [
        {
            "matrix": name,
            "mask": "random (i.i.d.)",
            "rank": "-",
            "tile": "-",
            "index_bpw": float("nan"),
            "retained": sc.retained_importance(a, np.random.default_rng(0).random(a.shape) >= SPARSITY),
        }
    ]
    for rank, grid in configs:
        tile = None if grid == 1 else (-(-a.shape[0] // grid), -(-a.shape[1] // grid))
        t0 = time.perf_counter()
        mask = sc.lowrank_mask(a, SPARSITY, rank, tile)
        rows.append(
            {
                "matrix": name,
                "mask": "low-rank",
                "rank": rank,
                "tile": f"{grid} x {grid}" if tile else "whole",
                "index_bpw": mask.stored_bits() / a.size,
                "retained": sc.retained_importance(a, mask),
                "sparsity": 1 - mask.to_dense().mean(),
                "seconds": time.perf_counter() - t0,
            }
        )
        print(f"  {name} rank {rank} grid {grid}: {rows[-1]['retained']:.3f}", flush=True)
    return rows


def retained_table(rows: list[dict]) -> str:
    lines = [
        f"S = {SPARSITY}. Retained = sum |W| kept / sum |W| kept by magnitude pruning at the same sparsity "
        "(1.000 = as good as an unconstrained mask). Rows with equal index bits compare tilings.",
        "",
        "| matrix | mask | rank per tile | tiling | index bits/weight | retained |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        bpw = "-" if r["mask"] != "low-rank" else f"{r['index_bpw']:.4f}"
        lines.append(f"| {r['matrix']} | {r['mask']} | {r['rank']} | {r['tile']} | {bpw} | {r['retained']:.3f} |")
    return "\n".join(lines)


def index_table(size: int) -> tuple[str, dict]:
    rng = np.random.default_rng(1)
    w = rng.standard_normal((size, size))
    magnitude = sc.magnitude_mask(w, SPARSITY)
    costs = sc.index_costs(magnitude)
    rows = [(name, costs[name]) for name in ("bitmap", "csr", "relative4", "relative5")]
    entropy = costs["entropy"]
    results = {"magnitude": costs}
    for rank, grid in ((4, 1), (16, 1), (4, 4), (16, 4)):
        tile = None if grid == 1 else (size // grid, size // grid)
        t0 = time.perf_counter()
        mask = sc.lowrank_mask(np.abs(w), SPARSITY, rank, tile)
        lr = sc.index_costs(mask)["lowrank"]
        lr["sparsity"] = 1 - mask.to_dense().mean()
        lr["retained"] = sc.retained_importance(np.abs(w), mask)
        print(f"  {size}^2 rank {rank} grid {grid}: {time.perf_counter() - t0:.0f} s", flush=True)
        rows.append((f"low-rank, rank {rank}, {'whole' if grid == 1 else f'{grid} x {grid} tiles'}", lr))
        results[rows[-1][0]] = lr
    lines = [
        f"{size} x {size} Gaussian layer at S = {SPARSITY} (magnitude mask for the unstructured formats; the "
        "low-rank masks are chosen by the search and hit the same sparsity).",
        "",
        "| index format | bits/weight | bits per kept weight | notes |",
        "|---|---|---|---|",
    ]
    for name, c in rows:
        note = ""
        if "fillers" in c:
            note = f"{c['fillers']} filler entries (each also needs a weight code)"
        if "retained" in c:
            note = f"sparsity {c['sparsity']:.4f}, retains {c['retained']:.3f} of the magnitude mask's sum |W|"
        lines.append(f"| {name} | {c['bpw']:.4f} | {c['bits_per_kept']:.3f} | {note} |")
    lines.append(
        f"| entropy H(S) of an i.i.d. mask (reference) | {entropy['bpw']:.4f} | {entropy['bits_per_kept']:.3f} | "
        "lower bound for unconstrained masks |"
    )
    return "\n".join(lines), results


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", type=int, default=4096, help="side of the index-table layer")
    p.add_argument("--quick", action="store_true", help="a 1024 x 1024 index table and three ranks, for a smoke run")
    a = p.parse_args(argv)
    configs = [
        (2, 1),
        (4, 1),
        (8, 1),
        (16, 1),
        (32, 1),
        (2, 2),
        (4, 2),
        (8, 2),
        (16, 2),
        (1, 4),
        (2, 4),
        (4, 4),
        (8, 4),
    ]
    if a.quick:
        a.size, configs = 1024, [(2, 1), (8, 1), (2, 2)]
    gauss = np.random.default_rng(0).standard_normal((800, 500))
    rows = retained_rows("Gaussian 800x500", gauss, configs) + retained_rows(
        "trained fc1 128x1024", trained_fc1(), configs
    )
    rows.sort(key=lambda r: (r["matrix"], r["index_bpw"] if r["mask"] == "low-rank" else -1, r["tile"]))
    write_section("lowrank-retained", retained_table(rows))
    text, index_results = index_table(a.size)
    write_section("lowrank-index-table", text)
    write_results("lowrank_index", {"retained": rows, "index_table": index_results})
    print("wrote bench/README.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
