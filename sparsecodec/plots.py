"""PNG figures for the demo and the benchmarks (needs matplotlib: ``pip install 'sparsecodec[demo]'``).

Each ``*_figure`` function returns a :class:`matplotlib.figure.Figure`, built directly rather than
through pyplot, so no GUI backend or global state is touched; :func:`save_figure` writes it.
"""

from __future__ import annotations

import os
import pathlib
from collections.abc import Mapping, Sequence
from typing import Any

from .inspection import COMPONENTS, LayerSummary

# One colour per bits/weight component, shared by every figure that splits a layer's cost.
COMPONENT_COLOURS = {"values": "#4c72b0", "patches": "#dd8452", "mask": "#55a868", "scales": "#8172b3"}
# Our implementation is drawn thick in red; the peers get the other colours.
OURS_COLOUR = "#c44e52"
OUR_NAMES = ("ours", "sparsecodec")
PEER_COLOURS = ("#4c72b0", "#dd8452", "#55a868", "#8172b3", "#937860", "#da8bc3", "#8c8c8c", "#64b5cd")


def _figure(width: float, height: float, ncols: int = 1, nrows: int = 1) -> tuple[Any, list[Any]]:
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise ImportError("plots need matplotlib: pip install 'sparsecodec[demo]'") from None
    fig = Figure(figsize=(width, height), layout="constrained")
    axes = list(fig.subplots(nrows, ncols, squeeze=False).flat)
    return fig, axes


def save_figure(fig: Any, path: str | os.PathLike) -> pathlib.Path:
    """Write ``fig`` as a PNG (creating its folder); returns the path."""
    out = pathlib.Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)
    return out


def _plain_numbers() -> Any:
    from matplotlib.ticker import FuncFormatter

    return FuncFormatter(lambda value, _: f"{value:g}")


def _log_y(ax: Any) -> None:
    """A log y scale labelled 0.1, 0.2, 0.5, 1, 2 ... rather than in powers of ten."""
    from matplotlib.ticker import LogLocator, NullFormatter

    ax.set_yscale("log")
    ax.yaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
    ax.yaxis.set_major_formatter(_plain_numbers())
    ax.yaxis.set_minor_formatter(NullFormatter())


def layer_bits_figure(
    layers: Sequence[LayerSummary],
    *,
    title: str,
    accuracy: Mapping[str, float] | None = None,
    sizes: Mapping[str, float] | None = None,
) -> Any:
    """Bits per weight of each compressed layer, stacked by component; beside it (optional) the test
    accuracy of each model variant, labelled with its size in KiB (``sizes``, same keys)."""
    compressed = [r for r in layers if r.compressed]
    dense = [r for r in layers if not r.compressed]
    fig, axes = _figure(11 if accuracy else 7, 4.2, 2 if accuracy else 1)
    ax = axes[0]
    names = [f"{r.name}\n{'x'.join(map(str, r.shape))}" for r in compressed]
    bottom = [0.0] * len(compressed)
    for comp in COMPONENTS:
        heights = [r.bits[comp] for r in compressed]
        ax.bar(names, heights, bottom=bottom, label=comp, color=COMPONENT_COLOURS[comp])
        bottom = [b + h for b, h in zip(bottom, heights, strict=True)]
    for i, r in enumerate(compressed):
        ax.annotate(f"{r.total_bpw:.2f}", (i, r.total_bpw), ha="center", va="bottom", fontsize=9)
    ax.set_ylabel("bits per weight")
    ax.set_xlabel("compressed layer (shape)")
    ax.set_ylim(0, max(bottom, default=1.0) * 1.35)
    note = f"kept dense (32 bits/weight): {', '.join(r.name for r in dense)}" if dense else "all layers compressed"
    ax.set_title(f"Bits per weight by component\n{note}", fontsize=10)
    ax.legend(loc="upper center", ncol=len(COMPONENTS), fontsize=9)
    if accuracy:
        ax2 = axes[1]
        labels = list(accuracy)
        values = [100 * accuracy[k] for k in labels]
        bars = ax2.bar(labels, values, color=["#999999", "#4c72b0", "#55a868"][: len(labels)])
        for bar, key in zip(bars, labels, strict=True):
            size = f"\n{sizes[key]:.1f} KiB" if sizes and key in sizes else ""
            ax2.annotate(
                f"{100 * accuracy[key]:.1f} %{size}",
                (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                ha="center",
                va="bottom",
                fontsize=9,
            )
        ax2.set_ylim(0, 115)
        ax2.set_ylabel("test accuracy (%)")
        ax2.set_xlabel("model")
        ax2.set_title("Accuracy and size of the weights", fontsize=10)
    fig.suptitle(title)
    return fig


# Panels of the bits-against-sparsity figure: (title, [(row key, line style, colour, legend label)]).
_BITS_PANELS = (
    (
        "Value bits of the kept weights",
        [
            ("ours_q1", "o-", "#4c72b0", "ours, q = 1 (values + patches)"),
            ("bound_q1", "--", "#4c72b0", "bound q(1 - S), q = 1"),
            ("ours_q2", "o-", OURS_COLOUR, "ours, q = 2 (values + patches)"),
            ("bound_q2", "--", OURS_COLOUR, "bound q(1 - S), q = 2"),
        ],
    ),
    (
        "Index bits: where the kept weights are",
        [
            ("bitmap", "s-", "#55a868", "bitmap"),
            ("csr", "^-", "#8172b3", "CSR (32-bit row pointers)"),
            ("relative4", "v-", "#937860", "relative index, 4-bit"),
            ("entropy", "--", "black", "entropy H(S) of an i.i.d. mask"),
        ],
    ),
    (
        "Whole layer at q = 2 (values, index and scales)",
        [
            ("ours_total_q2", "o-", OURS_COLOUR, "ours: XOR values + bitmap"),
            ("codes_bitmap_q2", "s-", "#55a868", "2-bit codes + bitmap"),
            ("codes_csr_q2", "^-", "#8172b3", "2-bit codes + CSR"),
            ("codes_relative4_q2", "v-", "#937860", "2-bit codes + relative index (fillers coded)"),
            ("bound_total_q2", "--", "black", "bound q(1 - S) + H(S)"),
        ],
    ),
)


def bits_vs_sparsity_figure(rows: Sequence[Mapping[str, float]], *, title: str) -> Any:
    """Three panels against sparsity S: the value bits of our XOR format (q = 1, 2) against the bound
    q(1 - S); the index formats alone; and whole-layer costs at q = 2. ``rows`` hold ``sparsity`` and
    every key named in ``_BITS_PANELS`` (bench/bits_per_weight.py computes them)."""
    s = [r["sparsity"] for r in rows]
    fig, axes = _figure(15, 4.6, len(_BITS_PANELS))
    for ax, (panel_title, series) in zip(axes, _BITS_PANELS, strict=True):
        for key, style, colour, label in series:
            ax.plot(s, [r[key] for r in rows], style, color=colour, label=label)
        ax.set_title(panel_title, fontsize=10)
        _log_y(ax)
        ax.set_xlabel("sparsity S (share of weights pruned)")
        ax.set_ylabel("bits per weight")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(title)
    return fig


def is_ours(impl: str) -> bool:
    """Whether a latency row's ``impl`` names our implementation (``"ours"``, ``"sparsecodec"``, or a
    variant such as ``"ours, streaming"``) rather than a peer."""
    return impl in OUR_NAMES or impl.startswith(tuple(f"{name}," for name in OUR_NAMES))


def latency_figure(rows: Sequence[Mapping[str, Any]], *, title: str) -> Any:
    """Latency against batch size, one line per implementation, one panel per (shape, sparsity, bits).

    ``rows`` follow bench/results/matmul_latency.json: ``shape``, ``sparsity``, ``bits``, ``batch``,
    ``impl`` and ``seconds``.
    """
    cases: dict[tuple, list[Mapping[str, Any]]] = {}
    for r in rows:
        cases.setdefault((tuple(r["shape"]), r["sparsity"], r["bits"]), []).append(r)
    if not cases:
        raise ValueError("no latency rows to plot")
    ncols = min(2, len(cases))
    nrows = -(-len(cases) // ncols)
    fig, axes = _figure(6.2 * ncols, 4.4 * nrows, ncols, nrows)
    for ax in axes[len(cases) :]:
        ax.set_visible(False)
    for ax, ((shape, sparsity, bits), case) in zip(axes, sorted(cases.items()), strict=False):
        impls = sorted({r["impl"] for r in case}, key=lambda name: (not is_ours(name), name))
        peers = iter(PEER_COLOURS)
        for impl in impls:
            points = sorted((r["batch"], r["seconds"]) for r in case if r["impl"] == impl)
            if is_ours(impl):  # our main path thick and solid; variants of it (e.g. streaming) dashed
                variant = impl not in OUR_NAMES
                style = {
                    "linewidth": 1.8 if variant else 2.8,
                    "color": OURS_COLOUR,
                    "linestyle": "--" if variant else "-",
                }
            else:
                style = {"color": next(peers, None)}
            ax.plot([b for b, _ in points], [1e3 * t for _, t in points], marker="o", label=impl, **style)
        ax.set_xscale("log", base=2)
        ax.xaxis.set_major_formatter(_plain_numbers())
        _log_y(ax)
        ax.set_xlabel("batch size")
        ax.set_ylabel("latency per call (ms)")
        ax.set_title(f"{shape[0]} x {shape[1]}, S = {sparsity}, q = {bits}", fontsize=10)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(title)
    return fig
