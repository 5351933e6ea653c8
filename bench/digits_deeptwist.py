"""End to end on real data: a CNN on scikit-learn's digits, pruned to 90 % with low-rank binary index
masks and 2-bit BCQ by DeepTwist fine-tuning, then XOR-encoded.

    python bench/digits_deeptwist.py          # a few minutes on 2 cores; writes bench/README.md

Steps: train the dense model; fine-tune with DeepTwist: for the first half of the fine-tuning the
sparsity rises on the cubic schedule and every `period` steps the weights are replaced by their
low-rank-masked 2-bit BCQ version (the mask re-chosen from |W| each time); then the masks are frozen
and training continues masked, still with a BCQ distortion every `period` steps. The final
distortion is XOR-encoded, the decoded weights are loaded into the model and its test accuracy is
measured. The first convolution (288 weights) and the classifier (1280 weights) stay dense, as is
usual; every other layer is compressed. Several seeds are run so that the spread is visible.
"""

from __future__ import annotations

import argparse
import functools
import sys
import time

import numpy as np
import torch
from readme_tables import write_results, write_section

import sparsecodec as sc
from sparsecodec.deeptwist import DeepTwist, linear_and_conv_weights
from sparsecodec.digits import DigitsCNN, accuracy, load_digits_split, train
from sparsecodec.distortion import Distortion, LowRankPruning

DENSE_LAYERS = ("conv1", "fc2")


def run(
    sparsity: float, rank: int, tile, bits: int, dense_epochs: int, twist_epochs: int, period: int, seed: int
) -> dict:
    torch.manual_seed(seed)
    data = load_digits_split(seed=seed)
    model = DigitsCNN()
    t0 = time.perf_counter()
    train(model, data, dense_epochs, lr=1e-3, seed=seed)
    dense_acc = accuracy(model, data.x_test, data.y_test)
    t_dense = time.perf_counter() - t0

    steps_per_epoch = -(-len(data.x_train) // 32)
    total = twist_epochs * steps_per_epoch
    ramp_end = total // 2
    schedule = functools.partial(sc.cubic_sparsity, final_sparsity=sparsity, begin_step=0, end_step=ramp_end)
    distortion = Distortion(LowRankPruning(schedule, rank=rank, tile=tile), bits=bits, scale_dtype="float16")
    weights = linear_and_conv_weights(model, exclude=DENSE_LAYERS)
    twist = DeepTwist(weights, distortion, period=period, freeze_masks_at=ramp_end)
    opt = torch.optim.Adam(model.parameters(), lr=5e-4)
    twist.attach(opt)
    t0 = time.perf_counter()
    train(model, data, twist_epochs, seed=seed + 1, optimizer=opt)
    encoded = twist.encode()
    twist.load(encoded)
    compressed_acc = accuracy(model, data.x_test, data.y_test)
    t_twist = time.perf_counter() - t0

    layers, totals = [], {"weights": 0, "values": 0.0, "patches": 0.0, "mask": 0.0, "scales": 0.0}
    for name, enc in encoded.items():
        s = enc.stats
        n = enc.size
        layers.append(
            {
                "layer": name,
                "shape": list(weights[name].shape),
                "sparsity": s["sparsity"],
                "values_bpw": s["values_bpw"],
                "patch_bpw": s["patch_bpw"],
                "mask_bpw": s["mask_bpw"],
                "scale_bpw": s["scale_bpw"],
                "total_bpw": s["total_bpw"],
                "efficiency": s["efficiency"],
            }
        )
        totals["weights"] += n
        for key, stat in (
            ("values", "values_bpw"),
            ("patches", "patch_bpw"),
            ("mask", "mask_bpw"),
            ("scales", "scale_bpw"),
        ):
            totals[key] += s[stat] * n
    n = totals["weights"]
    summary = {k: totals[k] / n for k in ("values", "patches", "mask", "scales")}
    summary["total"] = sum(summary.values())
    dense = {name: list(p.shape) for name, p in linear_and_conv_weights(model).items() if name in DENSE_LAYERS}
    return {
        "config": {
            "sparsity": sparsity,
            "rank": rank,
            "tile": tile,
            "bits": bits,
            "dense_epochs": dense_epochs,
            "twist_epochs": twist_epochs,
            "period": period,
            "seed": seed,
        },
        "dense_accuracy": dense_acc,
        "compressed_accuracy": compressed_acc,
        "layers": layers,
        "compressed_bpw": summary,
        "compressed_weights": n,
        "dense_layers": dense,
        "seconds": {"dense": t_dense, "deeptwist": t_twist},
    }


def table(runs: list[dict]) -> str:
    r = runs[0]
    c = r["config"]
    lines = [
        f"DigitsCNN on scikit-learn digits (1257 train / 540 test), {c['bits']}-bit BCQ, low-rank index rank "
        f"{c['rank']} tile {c['tile'] or 'whole'}, target sparsity {c['sparsity']}, DeepTwist period "
        f"{c['period']} steps, {c['dense_epochs']} dense + {c['twist_epochs']} fine-tuning epochs, seed {c['seed']}.",
        "",
        "| layer | shape | sparsity | values | patches | mask | scales | total bits/weight | E |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in r["layers"]:
        lines.append(
            f"| {row['layer']} | {'x'.join(map(str, row['shape']))} | {row['sparsity']:.3f} | "
            f"{row['values_bpw']:.4f} | {row['patch_bpw']:.4f} | {row['mask_bpw']:.4f} | "
            f"{row['scale_bpw']:.4f} | {row['total_bpw']:.4f} | {row['efficiency']:.3f} |"
        )
    b = r["compressed_bpw"]
    lines.append(
        f"| **all compressed** | {r['compressed_weights']} weights | | {b['values']:.4f} | {b['patches']:.4f} | "
        f"{b['mask']:.4f} | {b['scales']:.4f} | **{b['total']:.4f}** | |"
    )
    dense = ", ".join(f"{k} ({'x'.join(map(str, v))})" for k, v in r["dense_layers"].items())
    lines += [
        "",
        f"Layers kept dense: {dense}. The per-layer figures are for seed {c['seed']}.",
        "",
        "| seed | dense accuracy | compressed accuracy (decoded from the XOR format) | change | bits/weight |",
        "|---|---|---|---|---|",
    ]
    for run_ in runs:
        d, a = run_["dense_accuracy"], run_["compressed_accuracy"]
        lines.append(
            f"| {run_['config']['seed']} | {100 * d:.2f} % | {100 * a:.2f} % | {100 * (a - d):+.2f} points | "
            f"{run_['compressed_bpw']['total']:.4f} |"
        )
    drops = [100 * (x["dense_accuracy"] - x["compressed_accuracy"]) for x in runs]
    seconds = sum(x["seconds"]["dense"] + x["seconds"]["deeptwist"] for x in runs) / len(runs)
    lines += [
        "",
        f"Mean accuracy change {-np.mean(drops):+.2f} points (worst {-max(drops):+.2f}) over {len(runs)} seeds; "
        f"the test set has 540 images, so one image is 0.19 points. About {seconds:.0f} s per seed on 2 cores "
        "(dense training, DeepTwist fine-tuning and encoding).",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sparsity", type=float, default=0.9)
    p.add_argument("--rank", type=int, default=8)
    p.add_argument("--tile", type=int, default=None, help="square tile side (default: whole matrix)")
    p.add_argument("--bits", type=int, default=2)
    p.add_argument("--dense-epochs", type=int, default=30)
    p.add_argument("--twist-epochs", type=int, default=40)
    p.add_argument("--period", type=int, default=20)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--no-write", action="store_true", help="print only; leave bench/README.md alone")
    p.add_argument("--quick", action="store_true", help="one seed, 10 + 10 epochs, for a smoke run")
    a = p.parse_args(argv)
    if a.quick:
        a.seeds, a.dense_epochs, a.twist_epochs = [0], 10, 10
    torch.set_num_threads(2)
    runs = [run(a.sparsity, a.rank, a.tile, a.bits, a.dense_epochs, a.twist_epochs, a.period, seed) for seed in a.seeds]
    text = table(runs)
    print(text)
    if not a.no_write:
        write_section("digits-deeptwist", text)
        write_results("digits_deeptwist", runs)
    ok = all(
        x["compressed_accuracy"] >= x["dense_accuracy"] - 0.02 and x["compressed_bpw"]["total"] <= 0.5 for x in runs
    )
    return 0 if ok else 1


if __name__ == "__main__":
    np.set_printoptions(precision=4)
    sys.exit(main())
