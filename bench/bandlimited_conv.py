"""Speed of band-limited FFT convolution against torch's conv2d and a plain torch.fft implementation.

    python bench/bandlimited_conv.py          # about four minutes on 2 cores; writes bench/README.md
    python bench/bandlimited_conv.py --quick  # kernel 7 only, fewer rounds

Shapes: batch 8, 64 -> 64 channels, 64 x 64 maps, 'same' padding, kernels 3, 5, 7 and 11; our layer at
compress_rate 0, 0.5 and 0.75. Every method runs in the same process, interleaved round by round, and
the median of the rounds is reported (the machine is shared and noisy), with ratios to conv2d.

* conv2d: ``nn.Conv2d`` (oneDNN).
* plain torch.fft: a textbook FFT convolution with torch ops only (rfft2 of the padded input and of
  the filters on the same grid as ours, the band sliced out, one batched complex matmul per bin,
  zero-fill, irfft2), autograd for the backward pass.
* ours: ``BandLimitedConv2d`` with the native channel product, and with torch's batched matmul in its
  place (``product_backend("torch")``), to show which one the layer should use; and its speed mode
  (``algorithm="auto"``), timed where it picks direct convolution.

Forward is timed as inference (eval, no grad: our filter spectra are cached, as they are for any model
served); forward + backward as a training step (input and weight gradients; filter spectra recomputed).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable

import torch
from readme_tables import write_results, write_section
from torch import nn
from torch.nn import functional as F

import sparsecodec as sc
from sparsecodec.nn import BandLimitedConv2d
from sparsecodec.nn.spectral_conv import product_backend
from sparsecodec.spectral import SpectralBand, band_limit, fft_grid

BATCH, CHANNELS, SIZE = 8, 64, 64
KERNELS = (3, 5, 7, 11)
RATES = (0.0, 0.5, 0.75)


def plain_fft_conv(x: torch.Tensor, conv: nn.Conv2d, band: SpectralBand) -> torch.Tensor:
    """The peer: FFT convolution written plainly with torch.fft (zero 'same' padding, stride 1)."""
    pad = conv.kernel_size[0] // 2
    xp = F.pad(x, (pad, pad, pad, pad))
    grid = band.grid
    spectra = [torch.fft.rfft2(t, s=grid)[..., : band.cols] for t in (xp, conv.weight)]
    if band.rows < grid[0]:
        rows = torch.tensor(list(range(band.top)) + list(range(grid[0] - band.bottom, grid[0])))
        spectra = [s.index_select(-2, rows) for s in spectra]
    # bins first, one (batch, in) @ (in, out) product per bin
    xs, ws = (s.permute(2, 3, 0, 1).reshape(band.kept, *s.shape[:2]).contiguous() for s in spectra)
    y = torch.bmm(xs, ws.conj().transpose(1, 2)).reshape(band.rows, band.cols, x.shape[0], -1).permute(2, 3, 0, 1)
    full = y.new_zeros((*y.shape[:2], grid[0], grid[1] // 2 + 1))
    if band.rows < grid[0]:
        full[..., : band.top, : band.cols] = y[..., : band.top, :]
        full[..., grid[0] - band.bottom :, : band.cols] = y[..., band.top :, :]
    else:
        full[..., : band.cols] = y
    out = torch.fft.irfft2(full, s=grid)[..., : x.shape[-2], : x.shape[-1]]
    return out + conv.bias.reshape(1, -1, 1, 1)


def interleaved_medians(fns: dict[str, Callable[[], object]], rounds: int) -> dict[str, dict[str, float]]:
    """Warm each up twice, then run them round-robin ``rounds`` times: median and best seconds."""
    for fn in fns.values():
        fn()
        fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    return {name: {"median": statistics.median(t), "best": min(t)} for name, t in times.items()}


def methods(kernel: int, x: torch.Tensor, training: bool) -> dict[str, Callable[[], object]]:
    torch.manual_seed(kernel)
    conv = nn.Conv2d(CHANNELS, CHANNELS, kernel, padding=kernel // 2)
    layers = {rate: BandLimitedConv2d.from_conv(conv, rate) for rate in RATES}
    grid = (fft_grid(SIZE + 2 * (kernel // 2), kernel),) * 2
    bands = {rate: band_limit(grid, rate) for rate in RATES}
    grad = torch.randn(BATCH, CHANNELS, SIZE, SIZE)

    def step(forward: Callable[[torch.Tensor], torch.Tensor], backend: str = "auto") -> Callable[[], object]:
        if not training:

            def infer():
                with torch.no_grad(), product_backend(backend):
                    return forward(x)

            return infer
        xg = x.clone().requires_grad_()

        def train_step():
            with product_backend(backend):
                forward(xg).backward(grad)

        return train_step

    fast = {rate: BandLimitedConv2d.from_conv(conv, rate, algorithm="auto") for rate in RATES}
    for module in (conv, *layers.values(), *fast.values()):
        module.train(training)
    fns = {"conv2d": step(conv)}
    for rate in RATES:
        fns[f"plain {rate}"] = step(lambda t, band=bands[rate]: plain_fft_conv(t, conv, band))
        fns[f"torch product {rate}"] = step(layers[rate], "torch")
        fns[f"native {rate}"] = step(layers[rate], "native")
        if speed_mode_picks_direct(fast[rate], kernel):
            fns[f"auto {rate}"] = step(fast[rate])
    return fns


def speed_mode_picks_direct(layer: BandLimitedConv2d, kernel: int) -> bool:
    padded = (SIZE + 2 * (kernel // 2),) * 2
    return layer._direct_is_faster(layer._plan(padded, torch.float32, torch.device("cpu")), BATCH)


def run(kernels: tuple[int, ...], rounds: int) -> list[dict]:
    x = torch.randn(BATCH, CHANNELS, SIZE, SIZE, generator=torch.Generator().manual_seed(0))
    rows = []
    for kernel in kernels:
        grid = (fft_grid(SIZE + 2 * (kernel // 2), kernel),) * 2
        for training in (False, True):
            timings = interleaved_medians(methods(kernel, x, training), rounds)
            for rate in RATES:
                rows.append(
                    {
                        "kernel": kernel,
                        "pass": "forward + backward" if training else "forward",
                        "compress_rate": rate,
                        "measured_rate": band_limit(grid, rate).compress_rate,
                        "grid": grid,
                        "conv2d": timings["conv2d"],
                        "plain_fft": timings[f"plain {rate}"],
                        "ours_torch_product": timings[f"torch product {rate}"],
                        "ours": timings[f"native {rate}"],
                        "speed_mode": timings.get(f"auto {rate}"),
                    }
                )
            done = [r for r in rows if r["kernel"] == kernel and r["pass"] == rows[-1]["pass"]]
            print(
                f"  k={kernel} {rows[-1]['pass']}: conv2d {timings['conv2d']['median'] * 1e3:.1f} ms, ours "
                + ", ".join(f"{r['ours']['median'] * 1e3:.1f}" for r in done)
                + " ms",
                flush=True,
            )
    return rows


def table(rows: list[dict], which: str) -> str:
    lines = [
        f"**{which}** (median ms; ratios = conv2d time / ours, plain torch.fft time / ours, and ours at "
        'compress_rate 0 / ours at this rate; speed mode = what `algorithm="auto"` runs, with its time '
        "when it picks direct convolution)",
        "",
        "| kernel | compress_rate (measured) | conv2d | plain torch.fft | ours, torch product | ours | "
        "vs conv2d | vs plain | vs ours at 0 | speed mode |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        if r["pass"] != which:
            continue
        zero = next(z for z in rows if z["pass"] == which and z["kernel"] == r["kernel"] and z["compress_rate"] == 0)
        ours = r["ours"]["median"]
        lines.append(
            f"| {r['kernel']} | {r['compress_rate']:.2f} ({r['measured_rate']:.2f}) | "
            f"{r['conv2d']['median'] * 1e3:.1f} | {r['plain_fft']['median'] * 1e3:.1f} | "
            f"{r['ours_torch_product']['median'] * 1e3:.1f} | **{ours * 1e3:.1f}** | "
            f"{r['conv2d']['median'] / ours:.2f}x | {r['plain_fft']['median'] / ours:.2f}x | "
            f"{zero['ours']['median'] / ours:.2f}x | "
            + (f"direct: {r['speed_mode']['median'] * 1e3:.1f} |" if r["speed_mode"] else "FFT |")
        )
    return "\n".join(lines)


def targets(rows: list[dict]) -> list[str]:
    out = []
    for which in ("forward", "forward + backward"):

        def pick(kernel: int, rate: float, which: str = which) -> dict | None:
            return next(
                (r for r in rows if r["pass"] == which and r["kernel"] == kernel and r["compress_rate"] == rate), None
            )

        r0, r5 = pick(7, 0.0), pick(7, 0.5)
        if r0 is None or r5 is None:
            continue
        speedup = r0["conv2d"]["median"] / r0["ours"]["median"]
        band_gain = r0["ours"]["median"] / r5["ours"]["median"]
        out.append(
            f"* {which}, kernel 7: compress_rate 0 is {speedup:.2f}x faster than conv2d (target >= 2x: "
            f"{'met' if speedup >= 2 else 'MISSED'}); compress_rate 0.5 is {band_gain:.2f}x faster than "
            f"compress_rate 0 (target >= 1.5x: {'met' if band_gain >= 1.5 else 'MISSED'})."
        )
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="kernel 7 only, 3 rounds (a smoke run)")
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--no-write", action="store_true", help="print only; leave bench/README.md alone")
    a = p.parse_args(argv)
    kernels, rounds = ((7,), 3) if a.quick else (KERNELS, a.rounds)
    load = os.getloadavg()[0]
    rows = run(kernels, rounds)
    machine = (
        f"{platform.machine()}, torch {torch.__version__} with {torch.get_num_threads()} threads, "
        f"{sc.get_num_threads()} native threads, SIMD {sc.build_info()['simd_active']}; "
        f"load average {load:.1f} at the start"
    )
    text = "\n\n".join(
        [
            f"Batch {BATCH}, {CHANNELS} -> {CHANNELS} channels, {SIZE} x {SIZE} maps, 'same' padding, "
            f"float32, {rounds} interleaved rounds. Machine: {machine}.",
            table(rows, "forward"),
            table(rows, "forward + backward"),
            "\n".join(targets(rows)),
        ]
    )
    print(text)
    if not a.no_write:
        write_section("bandlimited-conv", text)
        write_results("bandlimited_conv", {"machine": machine, "rounds": rounds, "rows": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
