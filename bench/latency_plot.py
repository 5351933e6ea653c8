"""Plots matmul latency against batch size from the results of bench/matmul_latency.py.

    python bench/latency_plot.py      # reads bench/results/matmul_latency.json, writes the figure

One panel per (shape, sparsity, bits) measured, one line per implementation (ours and the peers
measured in the same run). Writes bench/plots/matmul_latency.png and links it from bench/README.md.
"""

from __future__ import annotations

import argparse
import json
import sys

from readme_tables import RESULTS, plot_path, write_section

from sparsecodec.plots import is_ours, latency_figure, save_figure

SOURCE = RESULTS / "matmul_latency.json"


def caption(data: dict) -> str:
    machine = data.get("machine") or {}
    where = ", ".join(f"{k} {v}" for k, v in machine.items() if isinstance(v, (str, int, float)))
    peers = sorted({r["impl"] for r in data["rows"] if not is_ours(r["impl"])})
    return (
        "### Matmul latency against batch size\n\n"
        "Time per call of `x @ W^T`: ours (thick red; dashed: its variants) against "
        f"{', '.join(peers)}, all measured in one run by `bench/matmul_latency.py` (log-log axes; lower is faster)."
        + (f" Machine: {where}." if where else "")
        + "\n\n![matmul latency against batch size](plots/matmul_latency.png)"
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.parse_args(argv)
    if not SOURCE.exists():
        print(f"{SOURCE} not found: run bench/matmul_latency.py first", file=sys.stderr)
        return 1
    data = json.loads(SOURCE.read_text())
    figure = save_figure(
        latency_figure(data["rows"], title="Matmul latency against batch size"), plot_path("matmul_latency")
    )
    write_section("matmul-latency-plot", caption(data))
    print(f"wrote {figure} and its section of bench/README.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
