"""Runs the XOR-format benchmarks and writes their tables into bench/README.md.

    python bench/report.py            # efficiency table + throughput (about two minutes)

Efficiency is computed directly (it is a size, not a time); throughput comes from the
pytest-benchmark suite in this folder, run in one session so that the yardstick (a numpy copy of the
same dense layer) is measured next to our code. Raw results go to bench/results/.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import platform
import subprocess
import sys
import tempfile

import numpy as np
from readme_tables import HERE, write_results, write_section

import sparsecodec as sc


def efficiency_rows(rows: int, cols: int, sparsities=(0.7, 0.8, 0.9, 0.95), seed: int = 0) -> list[dict]:
    """q = 1 on i.i.d. random masks: values/patch bits against the bound q(1 - S), per depth."""
    rng = np.random.default_rng(seed)
    w = rng.standard_normal((rows, cols)).astype(np.float32)
    out = []
    for s in sparsities:
        mask = rng.random(w.shape) >= s
        for depth in (1, 2):
            enc = sc.encode(w, mask=mask, bits=1, depth=depth)
            st = enc.stats
            out.append(
                {
                    "sparsity": s,
                    "depth": depth,
                    "n_in": enc.n_in,
                    "n_out": enc.n_out,
                    "values_bpw": st["values_bpw"],
                    "patch_bpw": st["patch_bpw"],
                    "bound_bpw": st["bound_bpw"],
                    "efficiency": st["efficiency"],
                    "efficiency_mr": st["efficiency_mr"],
                }
            )
            print(f"  S={s} depth={depth}: E={st['efficiency']:.3f}", flush=True)
    return out


def structured_rows(rows: int, cols: int, seed: int = 0) -> list[dict]:
    """q = 1 at S ~ 0.9 on structured masks, linear against scatter layout."""
    rng = np.random.default_rng(seed)
    w = rng.standard_normal((rows, cols)).astype(np.float32)
    row_density = np.clip(rng.gamma(1.0, 0.1, (rows, 1)), 0, 1)
    col_density = np.where(np.arange(cols) % 256 < 128, 1.6, 0.4)[None, :]
    masks = {
        "i.i.d. random": rng.random(w.shape) >= 0.9,
        "row densities with CV 1, alternating column blocks": rng.random(w.shape) < row_density * col_density,
        "low-rank index, rank 8": sc.lowrank_mask(np.abs(w), 0.9, 8),
    }
    out = []
    for name, mask in masks.items():
        for depth in (1, 2):
            row = {"mask": name, "depth": depth, "sparsity": None}
            for layout in ("linear", "scatter"):
                st = sc.encode(w, mask=mask, bits=1, depth=depth, layout=layout).stats
                row[layout] = st["efficiency"]
                row["sparsity"] = st["sparsity"]
            out.append(row)
            print(f"  {name} depth={depth}: linear {row['linear']:.3f} scatter {row['scatter']:.3f}", flush=True)
    return out


def structured_table(rows: list[dict], shape: tuple[int, int]) -> str:
    lines = [
        f"Encoding efficiency E for masks with structure, q = 1, {shape[0]} x {shape[1]}: kept weights that"
        " cluster in rows, column blocks or rectangles overload some slices of consecutive weights and"
        " starve others; the scatter layout (the default) spreads every slice over a group of about 2^17"
        " weights.",
        "",
        "| mask | S | depth | E, linear layout | E, scatter layout |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['mask']} | {r['sparsity']:.3f} | {r['depth']} | {r['linear']:.3f} | **{r['scatter']:.3f}** |"
        )
    return "\n".join(lines)


def efficiency_table(rows: list[dict], shape: tuple[int, int]) -> str:
    lines = [
        f"q = 1, i.i.d. random keep-mask, {shape[0]} x {shape[1]} Gaussian weights, default n_in / n_out.",
        "",
        "| S | depth | n_in | n_out | values_bpw | patch_bpw | values + patches | bound q(1-S) | E | E_MR |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['sparsity']:.2f} | {r['depth']} | {r['n_in']} | {r['n_out']} | {r['values_bpw']:.4f} | "
            f"{r['patch_bpw']:.4f} | {r['values_bpw'] + r['patch_bpw']:.4f} | {r['bound_bpw']:.4f} | "
            f"**{r['efficiency']:.3f}** | {r['efficiency_mr']:.3f} |"
        )
    return "\n".join(lines)


def run_throughput() -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        out = pathlib.Path(tmp) / "bench.json"
        cmd = [
            sys.executable,
            "-m",
            "pytest",
            str(HERE / "test_xor_throughput.py"),
            "-q",
            "-p",
            "no:cacheprovider",
            f"--benchmark-json={out}",
        ]
        subprocess.run(cmd, check=True, cwd=HERE.parent)
        return json.loads(out.read_text())


def throughput_table(data: dict) -> str:
    by_name = {b["name"]: b for b in data["benchmarks"]}

    def rate(name: str, per: str = "weights") -> tuple[float, float]:
        b = by_name[name]
        units = b["extra_info"]["weights"] * (b["extra_info"].get("planes", 1) if per == "plane-weights" else 1)
        return units / b["stats"]["median"], units / b["stats"]["min"]

    lines = [
        "4096 x 4096 float32 layer (64 MiB, twice the last-level cache), S = 0.9 magnitude mask, q = 2. "
        "Median (best) of the rounds.",
        "",
        "| operation | threads | depth | throughput, median (best) | vs yardstick | target |",
        "|---|---|---|---|---|---|",
    ]
    for depth, target in ((1, 5e6), (2, 1e6)):
        med, best = rate(f"test_encode_planes_one_thread[{depth}]", "plane-weights")
        lines.append(
            f"| encode XOR planes | 1 | {depth} | {med / 1e6:.1f} ({best / 1e6:.1f}) M weights/s per plane | "
            f"- | >= {target / 1e6:.0f} M: {'met' if med >= target else 'MISSED'} |"
        )
    for depth in (1, 2):
        med, best = rate(f"test_encode_full_two_threads[{depth}]", "plane-weights")
        rate_text = f"{med / 1e6:.1f} ({best / 1e6:.1f}) M weights/s per plane"
        lines.append(f"| encode, whole (prune + BCQ + XOR) | 2 | {depth} | {rate_text} | - | - |")
    for label, test, yard in (
        ("decode to float32, new output", "test_decode_dense_two_threads", "test_numpy_copy_yardstick"),
        (
            "decode to float32, reused output",
            "test_decode_dense_into_buffer_two_threads",
            "test_numpy_copyto_yardstick",
        ),
    ):
        ymed, ybest = rate(yard)
        for depth in (1, 2):
            med, best = rate(f"{test}[{depth}]")
            lines.append(
                f"| {label} | 2 | {depth} | {med / 1e9:.2f} ({best / 1e9:.2f}) G weights/s | "
                f"{med / ymed:.2f}x | >= 1 G: {'met' if med >= 1e9 else 'MISSED'} |"
            )
        lines.append(
            f"| yardstick: numpy {'copy' if 'new' in label else 'copyto'} of the dense layer | 1 | - | "
            f"{ymed / 1e9:.2f} ({ybest / 1e9:.2f}) G weights/s | 1.00x | - |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=4096, help="rows = cols of the efficiency layer")
    parser.add_argument("--skip-throughput", action="store_true")
    parser.add_argument("--quick", action="store_true", help="1024 x 1024, small structured masks, no throughput")
    args = parser.parse_args(argv)
    if args.quick:
        args.size, args.skip_throughput = 1024, True
    structured_shape = (512, 1024) if args.quick else (1024, 2048)

    info = sc.build_info()
    machine = (
        f"{platform.processor() or platform.machine()}, {info.get('threads')} threads, SIMD {info.get('simd_active')}"
    )
    print("efficiency ...", flush=True)
    eff = efficiency_rows(args.size, args.size)
    write_section("xor-efficiency", efficiency_table(eff, (args.size, args.size)))
    print("structured masks ...", flush=True)
    structured = structured_rows(*structured_shape)
    write_section("xor-structured", structured_table(structured, structured_shape))
    results = {"build": info, "efficiency": eff, "structured": structured}
    if not args.skip_throughput:
        print("throughput ...", flush=True)
        data = run_throughput()
        write_section("xor-throughput", throughput_table(data) + f"\n\nMachine: {machine}.")
        results["throughput"] = [
            {"name": b["name"], "stats": b["stats"], "extra_info": b["extra_info"]} for b in data["benchmarks"]
        ]
    print(f"wrote bench/README.md and {write_results('xor_format', results)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
