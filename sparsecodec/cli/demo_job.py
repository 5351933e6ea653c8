"""The demo behind ``sparsecodec demo``: compress a small CNN trained on scikit-learn's digits.

Steps: train the dense :class:`~sparsecodec.digits.DigitsCNN` (or load it from the output folder,
where the first run caches it); fine-tune it briefly with DeepTwist so that it tolerates the
compression (magnitude pruning to the config's sparsity and BCQ to its bits, applied every few
steps); convert it with :func:`sparsecodec.compress_` and :data:`DEMO_CONFIG`; save it with
:func:`sparsecodec.save` and load it back to check that the file reproduces the model exactly; then
report per-layer bits per weight, test accuracy before and after, latency against the dense model,
and write a PNG figure. Needs torch and scikit-learn (matplotlib for the figure).
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import pathlib
import time

import torch
from rich.console import Console
from rich.table import Table

from ..compress import compress_
from ..config import SQConfig
from ..deeptwist import DeepTwist, linear_and_conv_weights
from ..digits import DigitsCNN, DigitsData, accuracy, load_digits_split, train
from ..distortion import Distortion, MagnitudePruning
from ..info import build_info
from ..inspection import summarize_model, totals
from ..masks.pruning import cubic_sparsity
from ..serialization import load, save
from .progress import ProgressExecutor, progress_bar
from .tables import layer_table, size_text

#: The default SQConfig (90 % pruned, 2-bit BCQ, bitmap mask) for the two large layers; the first
#: convolution (288 weights) and the classifier (1280 weights) stay dense, as is usual: they are 1 %
#: of the weights and the most sensitive to pruning.
DEMO_CONFIG: dict[str, SQConfig | None] = {"conv1": None, "fc2": None, "_default": SQConfig()}

MODEL_FILE = "digits_cnn.safetensors"
PLOT_FILE = "digits_cnn.png"


@dataclasses.dataclass(frozen=True)
class DemoOptions:
    out_dir: pathlib.Path = pathlib.Path("sparsecodec-demo")
    epochs: int = 15
    finetune_epochs: int = 20
    seed: int = 0
    retrain: bool = False
    plot: bool = True


def run_demo(options: DemoOptions, console: Console) -> int:
    """Run the demo, printing to ``console`` (with progress bars on a terminal). Returns 0, or 1 if the
    saved file does not reproduce the compressed model."""
    print_machine(console)
    out = options.out_dir.resolve()
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(options.seed)
    data = load_digits_split(seed=options.seed)
    console.print(f"data: scikit-learn digits, {len(data.x_train)} training / {len(data.x_test)} test images of 8x8")

    dense, cache, cached = _dense_model(data, options, console)
    console.print(f"dense model: {'loaded from' if cached else 'trained, cached in'} {cache}")
    dense_acc = accuracy(dense, data.x_test, data.y_test)

    model = copy.deepcopy(dense)
    t0 = time.perf_counter()
    if options.finetune_epochs:
        _deeptwist(model, data, options, console)
        console.print(f"DeepTwist fine-tuning: {options.finetune_epochs} epochs in {time.perf_counter() - t0:.1f} s")
    with progress_bar(console) as bar:
        task = bar.add_task("compressing layers", total=2)
        t0 = time.perf_counter()
        compress_(model, DEMO_CONFIG, executor=ProgressExecutor(lambda: bar.advance(task)))
        t_compress = time.perf_counter() - t0
    compressed_acc = accuracy(model, data.x_test, data.y_test)

    path = out / MODEL_FILE
    save(model, path)
    reloaded = load(path, DigitsCNN()).eval()
    with torch.no_grad():
        exact = torch.equal(reloaded(data.x_test), model.eval()(data.x_test))

    layers = summarize_model(model)
    tot = totals(layers)
    console.print(layer_table(layers, f"DigitsCNN compressed with {_config_text()} in {t_compress:.2f} s"))
    dense_bytes = sum(p.numel() * p.element_size() for p in dense.parameters())
    file_bytes = path.stat().st_size
    console.print(_results_table(dense_acc, compressed_acc, dense_bytes, file_bytes, tot))
    console.print(_latency_table(dense, model, data, console))
    console.print(f"the saved file reproduces the compressed model exactly: {'yes' if exact else 'NO'}")

    written = [f"compressed model  {path} ({size_text(file_bytes)})"]
    if options.plot:
        from ..plots import layer_bits_figure, save_figure

        try:
            figure = layer_bits_figure(
                layers,
                title="sparsecodec demo: DigitsCNN on scikit-learn digits",
                accuracy={"dense": dense_acc, "compressed": compressed_acc},
                sizes={"dense": dense_bytes / 1024, "compressed": file_bytes / 1024},
            )
            written.append(f"figure            {save_figure(figure, out / PLOT_FILE)}")
        except ImportError as exc:
            written.append(f"figure            skipped: {exc}")
    written.append(f"dense model cache {cache}")
    console.print("\n".join(["files:", *(f"  {line}" for line in written)]))
    console.print(f"load the compressed model with sparsecodec.load({str(path)!r}, sparsecodec.digits.DigitsCNN())")
    return 0 if exact else 1


def print_machine(console: Console) -> None:
    """One line: the sparsecodec version, the SIMD level in use and the thread counts."""
    info = build_info()
    console.print(
        f"sparsecodec {info['version']} | SIMD {info.get('simd_active')} | "
        f"{info.get('threads')} native threads, {torch.get_num_threads()} torch threads"
    )


def _config_text() -> str:
    cfg = DEMO_CONFIG["_default"]
    assert cfg is not None
    return f"SQConfig() (S = {cfg.sparsity}, {cfg.bits}-bit, {cfg.mask_format} mask), conv1 and fc2 kept dense"


def _dense_model(data: DigitsData, options: DemoOptions, console: Console) -> tuple[DigitsCNN, pathlib.Path, bool]:
    """The trained dense model: cached per seed and epoch count, so a second run skips training."""
    cache = options.out_dir.resolve() / f"dense_digits_cnn_seed{options.seed}_epochs{options.epochs}.pt"
    model = DigitsCNN()
    if cache.exists() and not options.retrain:
        try:
            model.load_state_dict(torch.load(cache, weights_only=True))
            return model.eval(), cache, True
        except (RuntimeError, OSError, ValueError):
            pass  # a damaged or stale cache is simply retrained
    with progress_bar(console) as bar:
        task = bar.add_task("training the dense model", total=options.epochs)
        train(model, data, options.epochs, seed=options.seed, on_epoch=lambda _: bar.advance(task))
    torch.save(model.state_dict(), cache)
    return model.eval(), cache, False


def _deeptwist(model: DigitsCNN, data: DigitsData, options: DemoOptions, console: Console) -> None:
    """Fine-tune towards the compressed form: the sparsity rises to the config's on a cubic schedule
    over the first half, then the masks are frozen; every 20 steps the weights are pruned and
    quantised as compress_ will do, so the network learns to work that way."""
    cfg = DEMO_CONFIG["_default"]
    assert cfg is not None
    steps = options.finetune_epochs * -(-len(data.x_train) // 32)
    ramp = steps // 2
    schedule = functools.partial(cubic_sparsity, final_sparsity=cfg.sparsity, begin_step=0, end_step=ramp)
    distortion = Distortion(
        MagnitudePruning(schedule),
        bits=cfg.bits,
        group_size=cfg.group_size,
        method=cfg.method,
        scale_dtype=cfg.scale_dtype,
    )
    weights = linear_and_conv_weights(model, exclude=[k for k, v in DEMO_CONFIG.items() if v is None])
    twist = DeepTwist(weights, distortion, period=20, freeze_masks_at=ramp)
    optimizer = torch.optim.Adam(model.parameters(), lr=5e-4)
    twist.attach(optimizer)
    with progress_bar(console) as bar:
        task = bar.add_task("DeepTwist fine-tuning", total=options.finetune_epochs)
        train(
            model,
            data,
            options.finetune_epochs,
            seed=options.seed + 1,
            optimizer=optimizer,
            on_epoch=lambda _: bar.advance(task),
        )
    twist.distort()  # end on a distortion, so the weights are exactly what compress_ encodes
    model.eval()


def _results_table(dense_acc: float, comp_acc: float, dense_bytes: int, file_bytes: int, tot: dict) -> Table:
    table = Table(title="Accuracy and size", title_justify="left", header_style="bold")
    for name in ("model", "test accuracy", "weights", "bits/weight (all layers)"):
        table.add_column(name, justify="left" if name == "model" else "right")
    table.add_row("dense float32", f"{100 * dense_acc:.2f} %", size_text(dense_bytes), "32")
    table.add_row("compressed", f"{100 * comp_acc:.2f} %", f"{size_text(file_bytes)} file", f"{tot['all_bpw']:.3f}")
    table.add_row(
        "change", f"{100 * (comp_acc - dense_acc):+.2f} points", f"{dense_bytes / file_bytes:.1f}x smaller", ""
    )
    return table


def _latency_table(dense: torch.nn.Module, compressed: torch.nn.Module, data: DigitsData, console: Console) -> Table:
    """Forward-pass time of both models at batch 1 and on the whole test set (best of several runs)."""
    table = Table(title="Latency per forward pass (best of repeated runs)", title_justify="left", header_style="bold")
    for name in ("batch", "dense", "compressed", "compressed / dense"):
        table.add_column(name, justify="right")
    batches = ((1, 50), (32, 20), (len(data.x_test), 5))
    with progress_bar(console) as bar, torch.no_grad():
        task = bar.add_task("timing forward passes", total=len(batches))
        for batch, repeat in batches:
            x = data.x_test[:batch]
            t_dense, t_comp = _best_time(dense, x, repeat), _best_time(compressed, x, repeat)
            table.add_row(str(batch), f"{1e3 * t_dense:.2f} ms", f"{1e3 * t_comp:.2f} ms", f"{t_comp / t_dense:.2f}x")
            bar.advance(task)
    return table


def _best_time(model: torch.nn.Module, x: torch.Tensor, repeat: int) -> float:
    model(x)  # warm-up: caches, thread pools
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        model(x)
        best = min(best, time.perf_counter() - t0)
    return best
