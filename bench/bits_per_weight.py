"""Bits per weight against sparsity: our XOR format against the bound and the usual index formats.

    python bench/bits_per_weight.py           # 2048 x 2048 Gaussian layer, under a minute
    python bench/bits_per_weight.py --quick   # 512 x 512, a few seconds

For each sparsity S the layer is pruned by magnitude and encoded at q = 1 and q = 2 (default
settings). Reported: our value bits (XOR-coded planes + patches) against the bound q(1 - S); the
index bits of the same mask as a bitmap, CSR, Deep Compression's 4-bit relative index and the mask
entropy H(S); and whole-layer costs at q = 2, where the alternatives store the same 2-bit codes of
the kept weights plainly next to their index (the relative index also codes its filler entries).
Writes a table and a figure (bench/plots/bits_per_weight.png) into bench/README.md.
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np
from readme_tables import plot_path, write_results, write_section

import sparsecodec as sc
from sparsecodec.plots import bits_vs_sparsity_figure, save_figure

SPARSITIES = (0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.95, 0.98)


def measure(size: int, sparsities=SPARSITIES, seed: int = 0) -> list[dict]:
    w = np.random.default_rng(seed).standard_normal((size, size)).astype(np.float32)
    rows = []
    for s in sparsities:
        encs = {q: sc.encode(w, sparsity=s, bits=q) for q in (1, 2)}
        stats = {q: e.stats for q, e in encs.items()}
        costs = sc.index_costs(encs[2].mask)
        index = {name: costs[name]["bpw"] for name in ("bitmap", "csr", "relative4", "entropy")}
        scales = stats[2]["scale_bpw"]
        codes = 2 * (1 - s) + scales  # the 2-bit codes of the kept weights stored plainly, and the scales
        relative_slots = costs["relative4"]["bits"] / 4 / w.size  # kept + filler entries, each with a code
        rows.append(
            {
                "sparsity": s,
                "achieved_sparsity": stats[2]["sparsity"],
                "ours_q1": stats[1]["values_bpw"] + stats[1]["patch_bpw"],
                "ours_q2": stats[2]["values_bpw"] + stats[2]["patch_bpw"],
                "bound_q1": 1 - s,
                "bound_q2": 2 * (1 - s),
                "efficiency_q1": stats[1]["efficiency"],
                "efficiency_q2": stats[2]["efficiency"],
                "ours_total_q2": stats[2]["total_bpw"],
                **index,
                "codes_bitmap_q2": codes + index["bitmap"],
                "codes_csr_q2": codes + index["csr"],
                "codes_relative4_q2": 2 * relative_slots + scales + index["relative4"],
                "bound_total_q2": codes + index["entropy"],
            }
        )
        print(f"  S={s}: q=1 E={stats[1]['efficiency']:.3f}, q=2 E={stats[2]['efficiency']:.3f}", flush=True)
    return rows


def table(rows: list[dict], size: int) -> str:
    lines = [
        f"{size} x {size} Gaussian layer pruned by magnitude, default encoder settings (depth 2, float32 scales). "
        "Values = XOR-coded planes + patches, against the bound q(1 - S). Whole layer at q = 2 = values + index "
        "+ scales; the alternatives store the 2-bit codes of the kept weights plainly beside their index.",
        "",
        "![bits per weight against sparsity](plots/bits_per_weight.png)",
        "",
        "| S | values, q = 1 | bound | values, q = 2 | bound | bitmap | CSR | relative 4-bit | H(S) "
        "| whole layer q = 2: ours | 2-bit + CSR | 2-bit + relative |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        s = r["sparsity"]
        lines.append(
            f"| {s:.2f} | {r['ours_q1']:.4f} | {r['bound_q1']:.4f} | {r['ours_q2']:.4f} | {r['bound_q2']:.4f} | "
            f"{r['bitmap']:.3f} | {r['csr']:.3f} | {r['relative4']:.3f} | {r['entropy']:.3f} | "
            f"**{r['ours_total_q2']:.3f}** | {r['codes_csr_q2']:.3f} | {r['codes_relative4_q2']:.3f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", type=int, default=2048, help="rows = cols of the layer (default 2048)")
    p.add_argument("--quick", action="store_true", help="a 512 x 512 layer, for a smoke run")
    a = p.parse_args(argv)
    size = 512 if a.quick else a.size
    t0 = time.perf_counter()
    rows = measure(size)
    title = f"Bits per weight against sparsity, {size} x {size} Gaussian layer"
    figure = save_figure(bits_vs_sparsity_figure(rows, title=title), plot_path("bits_per_weight"))
    write_section("bits-per-weight", table(rows, size))
    results = write_results("bits_per_weight", {"size": size, "rows": rows})
    print(f"wrote bench/README.md, {figure} and {results} in {time.perf_counter() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
