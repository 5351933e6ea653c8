"""Accuracy against compress_rate on real data: the digits CNN with band-limited convolutions.

    python bench/digits_bandlimited.py          # about ten minutes on one core; writes bench/README.md
    python bench/digits_bandlimited.py --quick  # one seed, fewer epochs

The small CNN of ``sparsecodec.digits`` (conv 1->32, conv 32->64, both 3x3 with padding 1 on the
8 x 8 images, then max-pool and two linear layers) has both convolutions replaced by
``BandLimitedConv2d`` at one compress_rate, and is trained from the same initialisation and data order
as the ordinary model (compress_rate 0 is that model, computed by FFT). Two accuracies per rate, on the
540 held-out images:

* trained and tested at the rate (band-limited training and inference, as in Dziedzic et al.);
* trained at 0 and only tested at the rate (the band imposed on a finished model).

On a 10 x 10 grid the band rounds coarsely, so the measured share of coefficients discarded is
reported beside the nominal rate.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import torch
from readme_tables import write_results, write_section

import sparsecodec as sc
from sparsecodec.digits import DigitsCNN, accuracy, load_digits_split, train
from sparsecodec.nn import BandLimitedConv2d

RATES = (0.0, 0.25, 0.5, 0.75, 0.85)


def band_limited_model(rate: float, seed: int) -> DigitsCNN:
    torch.manual_seed(seed)
    model = DigitsCNN()
    model.conv1 = BandLimitedConv2d.from_conv(model.conv1, rate)
    model.conv2 = BandLimitedConv2d.from_conv(model.conv2, rate)
    return model


def set_rate(model: DigitsCNN, rate: float) -> None:
    model.conv1.compress_rate = rate
    model.conv2.compress_rate = rate


def run(seed: int, epochs: int) -> list[dict]:
    data = load_digits_split(seed=seed)
    rows = []
    baseline = None
    for rate in RATES:
        model = band_limited_model(rate, seed)
        t0 = time.perf_counter()
        train(model, data, epochs, seed=seed)
        seconds = time.perf_counter() - t0
        if rate == 0.0:
            baseline = model
        set_rate(baseline, rate)
        rows.append(
            {
                "seed": seed,
                "compress_rate": rate,
                "measured_rate": model.conv1.band((8, 8)).compress_rate,
                "accuracy": accuracy(model, data.x_test, data.y_test),
                "accuracy_trained_at_0": accuracy(baseline, data.x_test, data.y_test),
                "train_seconds": seconds,
            }
        )
        set_rate(baseline, 0.0)
        print(f"  seed {seed} rate {rate}: {rows[-1]['accuracy']:.4f} ({seconds:.1f} s)", flush=True)
    return rows


def table(rows: list[dict], epochs: int) -> str:
    seeds = sorted({r["seed"] for r in rows})
    lines = [
        f"Test accuracy (%) of the digits CNN with both convolutions band-limited, {epochs} epochs of Adam, "
        f"mean ± standard deviation over seeds {', '.join(map(str, seeds))} (540 test images: one image is "
        "0.19 points).",
        "",
        "| compress_rate (measured on the 10 x 10 grid) | trained and tested at the rate | trained at 0, tested at "
        "the rate |",
        "|---|---|---|",
    ]

    def stats(values: list[float]) -> str:
        mean = 100 * statistics.mean(values)
        spread = 100 * statistics.stdev(values) if len(values) > 1 else 0.0
        return f"{mean:.2f} ± {spread:.2f}"

    for rate in RATES:
        sel = [r for r in rows if r["compress_rate"] == rate]
        lines.append(
            f"| {rate:.2f} ({sel[0]['measured_rate']:.2f}) | {stats([r['accuracy'] for r in sel])} | "
            f"{stats([r['accuracy_trained_at_0'] for r in sel])} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--quick", action="store_true", help="one seed, 5 epochs (a smoke run)")
    p.add_argument("--no-write", action="store_true", help="print only; leave bench/README.md alone")
    a = p.parse_args(argv)
    if a.quick:
        a.seeds, a.epochs = [0], 5
    # One thread: these layers are too small to share out, and a second thread only waits for its
    # core on a busy machine.
    torch.set_num_threads(1)
    sc.set_num_threads(1)
    rows = [row for seed in a.seeds for row in run(seed, a.epochs)]
    text = table(rows, a.epochs)
    print(text)
    if not a.no_write:
        write_section("digits-bandlimited", text)
        write_results("digits_bandlimited", rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
