"""Rich tables of per-layer compression figures, shared by demo, compress and inspect."""

from __future__ import annotations

from collections.abc import Sequence

from rich.table import Table

from ..inspection import COMPONENTS, LayerSummary, totals


def shape_text(shape: Sequence[int]) -> str:
    return "x".join(str(int(d)) for d in shape)


def size_text(n_bytes: float) -> str:
    for unit, scale in (("MiB", 2**20), ("KiB", 2**10)):
        if n_bytes >= scale:
            return f"{n_bytes / scale:.1f} {unit}"
    return f"{int(n_bytes)} B"


def plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def layer_table(layers: Sequence[LayerSummary], title: str, *, streams: bool = False) -> Table:
    """One row per layer (bits/weight split into values, patches, mask and scales), then totals over
    the compressed layers and over all layers. ``streams`` adds stream versions and the CRC check."""
    table = Table(title=title, title_justify="left", header_style="bold")
    table.add_column("layer")
    table.add_column("format")
    table.add_column("shape", justify="right")
    table.add_column("sparsity", justify="right")
    for comp in COMPONENTS:
        table.add_column(comp, justify="right")
    table.add_column("bits/weight", justify="right", style="bold")
    if streams:
        table.add_column("stream v", justify="right")
        table.add_column("CRC32", justify="center")
    for r in layers:
        cells = [r.name, r.format, shape_text(r.shape)]
        if r.compressed:
            cells += [f"{r.sparsity:.3f}", *(f"{r.bits[c]:.4f}" for c in COMPONENTS), f"{r.total_bpw:.4f}"]
        else:
            cells += ["-", *("-" for _ in COMPONENTS), f"{r.total_bpw:g}"]
        if streams:
            cells += [",".join(str(v) for v in sorted(set(r.stream_versions))) or "-", "ok" if r.compressed else "-"]
        table.add_row(*cells)
    t = totals(layers)
    blanks = ["", ""] if streams else []
    if t["compressed_weights"]:
        table.add_section()
        cells = ["compressed layers", "", f"{int(t['compressed_weights'])} weights", ""]
        table.add_row(*cells, *(f"{t[c]:.4f}" for c in COMPONENTS), f"{t['compressed_bpw']:.4f}", *blanks)
    if t["all_weights"] > t["compressed_weights"]:
        cells = ["all layers", "", f"{int(t['all_weights'])} weights", "", *("" for _ in COMPONENTS)]
        table.add_row(*cells, f"{t['all_bpw']:.4f}", *blanks)
    return table
