"""In-place conversion of a torch model: ``compress_(model, config)`` in the style of torchao's
``quantize_``, returning a report of what was converted and what was skipped, and why.

``config`` is one :class:`SQConfig` for every eligible layer, or a mapping from layer names to
configs: exact names first, then ``"re:<regex>"`` patterns in order, then the kind keys
``"_linear"``, ``"_conv2d"`` and ``"_embedding"`` (every layer of that kind), then ``"_default"``; a
value of ``None`` skips the layer. Linear, Conv2d and Embedding layers are converted (and Hugging
Face's transposed ``Conv1D``, as a linear layer); every other module with a weight, every weight
shared by several layers (a tied embedding and LM head), and every layer with an option its
compressed form cannot honour (an embedding's ``max_norm``) is reported as skipped with the reason,
never silently left alone. The layer kinds are registered in :mod:`sparsecodec.nn.registry`.

With an ``executor`` (any ``concurrent.futures.Executor``: a process pool, ``dask.distributed``'s
``Client.get_executor()``, Ray's ...), layers are encoded in parallel wherever the executor runs; each
task receives a float32 array and returns stream bytes. A local process pool should spawn its workers
(``ProcessPoolExecutor(mp_context=multiprocessing.get_context("spawn"))``): a forked child of a process
whose torch and OpenMP thread pools are running can deadlock.

With ``calibration`` (batches of model inputs), layers are compressed in forward order, each from the
Hessian of inputs that passed through the layers already compressed (block by block for transformer
stacks; see :mod:`sparsecodec.calibration.sequential`): GPTQ (``method="gptq"``), Wanda and SparseGPT
(``pruning=``). Padding positions (the batches' ``attention_mask``) are left out of the statistics.
An executor then takes the layers of one *stage* (those reading one input: a block's query, key and
value projections) in parallel; stages run one after another, since each one's statistics depend on
the ones before, so a model that is one long chain of layers gains nothing from it. Embeddings take
the data-free counterpart of a calibrated config (round to nearest, magnitude pruning): their inputs
are indices. ``target_bpw`` is budget mode (:mod:`sparsecodec.calibration.budget`), and
``sparsity_scope="model"`` meets the config's sparsity over the whole model rather than in every
layer, each layer pruned as much as it can bear; their sensitivity measurement runs in this process.
On any failure (a batch that does not fit the model, an error in a layer, an interrupt) the model is
left as it was.
"""

from __future__ import annotations

import contextlib
import re
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from .calibration.budget import BudgetPlan, plan_budget, plan_model_sparsity
from .calibration.sequential import SequentialCalibration, as_batches, check_batches, token_counts
from .config import SQConfig
from .formats.xor_codec import EncodedWeight, decode, encode
from .masks.pruning import frequency_weighted_mask
from .nn.registry import LAYER_KINDS, LayerKind, compressed_types, kind_of
from .options import CALIBRATED_PRUNINGS, calibrated_methods
from .quantizers import calibration_needed

ConfigSpec = SQConfig | Mapping[str, SQConfig | None]
#: The base config of budget mode when none is given: GPTQ, SparseGPT pruning, float16 steps.
BUDGET_BASE = SQConfig(method="gptq", pruning="sparsegpt", scale_dtype="float16", bits=4, sparsity=0.0, group_size=128)

_SUPPORTED = ", ".join(k.base.__name__ for k in LAYER_KINDS.values()) + " and Hugging Face Conv1D"


@dataclass(frozen=True)
class LayerProgress:
    """What ``compress_`` passes its ``progress`` callback after each layer: the layer's name, its
    position (1-based) among the ``total`` layers being converted, and the seconds since
    ``compress_`` started (enough for a bar with an ETA)."""

    name: str
    index: int
    total: int
    seconds: float


@dataclass
class LayerReport:
    name: str
    kind: str
    converted: bool
    reason: str = ""
    shape: tuple[int, ...] = ()
    stats: dict[str, Any] = field(default_factory=dict)


@dataclass
class CompressionReport:
    """What ``compress_`` did to each module that holds a weight."""

    layers: list[LayerReport]
    #: What budget mode (``target_bpw=...``) or a per-model sparsity (``sparsity_scope="model"``) chose, else None.
    budget: BudgetPlan | None = None

    @property
    def converted(self) -> list[LayerReport]:
        return [r for r in self.layers if r.converted]

    @property
    def skipped(self) -> list[LayerReport]:
        return [r for r in self.layers if not r.converted]

    def total_bits_per_weight(self) -> float:
        """Bits per weight over the converted layers (values, patches, mask and scales)."""
        n = sum(r.stats["weights"] for r in self.converted)
        return sum(r.stats["total_bpw"] * r.stats["weights"] for r in self.converted) / n if n else float("nan")

    def __str__(self) -> str:
        lines = [f"compressed {len(self.converted)} layers, skipped {len(self.skipped)}"]
        if self.budget is not None:
            lines.append(str(self.budget))
        for r in self.layers:
            if r.converted:
                lines.append(
                    f"  + {r.name} ({r.kind} {tuple(r.shape)}): {r.stats['total_bpw']:.3f} bits/weight, "
                    f"sparsity {r.stats['sparsity']:.3f}"
                )
            else:
                lines.append(f"  - {r.name} ({r.kind}): {r.reason}")
        return "\n".join(lines)


def _config_for(name: str, kind: LayerKind, spec: ConfigSpec) -> tuple[SQConfig | None, str]:
    if isinstance(spec, SQConfig):
        return spec, ""
    if name in spec:
        return spec[name], "set to None for this layer"
    for key, cfg in spec.items():
        if key.startswith("re:") and re.fullmatch(key[3:], name):
            return cfg, f"set to None by pattern {key!r}"
    if kind.config_key in spec:
        return spec[kind.config_key], f"set to None for {kind.base.__name__} layers by {kind.config_key!r}"
    if "_default" in spec:
        return spec["_default"], "no config (the default is None)"
    return None, "no config for this layer and no '_default'"


def _encode_task(weight: np.ndarray, kwargs: dict[str, Any]) -> bytes:
    """Encodes one matrix; runs wherever the executor puts it, so it only takes and returns plain data."""
    return encode(weight, **kwargs).to_bytes()


@dataclass
class _Plan:
    """One layer to convert: its module, kind, config and (once encoded) its encoded matrices."""

    name: str
    module: nn.Module
    kind: LayerKind
    config: SQConfig
    report: LayerReport
    encoded: list[EncodedWeight] = field(default_factory=list)
    note: str = ""
    #: keep-masks chosen before encoding, one per matrix (an embedding pruned for its calibration text)
    keep: list[np.ndarray] | None = None


def compress_(
    model: nn.Module,
    config: ConfigSpec | None = None,
    filter_fn: Callable[[nn.Module, str], bool] | None = None,
    *,
    executor: Executor | None = None,
    calibration: Iterable[Any] | None = None,
    blocks: str | Sequence[str] | None = None,
    progress: Callable[[LayerProgress], None] | None = None,
    target_bpw: float | None = None,
    candidates: Iterable[tuple[float, int, int | None]] | None = None,
    sparsity_scope: str = "layer",
) -> CompressionReport:
    """Replace eligible layers of ``model`` by compressed ones, in place; see the module docstring.

    Args:
        model: the module to convert.
        config: one SQConfig for every layer, or a mapping (see the module docstring).
        filter_fn: ``filter_fn(module, name)`` False keeps a layer as it is.
        executor: encodes independent layers in parallel (with calibration: the layers of one stage).
        calibration: batches of model inputs (tensors, tuples of positional inputs, or dicts such as a
            tokenizer's output) for the calibrated methods (``method="gptq"``, ``pruning="wanda"`` or
            ``"sparsegpt"``); layers are then compressed in forward order on the outputs of the layers
            already compressed (:mod:`sparsecodec.calibration.sequential`).
        blocks: the model's repeated blocks for calibration: a container's name
            (``"encoder.layer"``), a list of module names, or ``[]`` for none; found when None.
        progress: called with a :class:`LayerProgress` after each layer is compressed.
        target_bpw: budget mode (needs ``calibration``): choose per layer, from ``candidates``
            ((sparsity, bits, group size) triples; default
            :data:`sparsecodec.calibration.budget.DEFAULT_CANDIDATES`), the config that keeps the
            model closest to the original with ``target_bpw`` bits per weight over all converted
            layers (:mod:`sparsecodec.calibration.budget`). ``config`` is then the base the candidates
            change (default: GPTQ with SparseGPT pruning, float16 steps); the report's ``budget``
            shows the choice.
        sparsity_scope: ``"layer"`` (default) prunes ``config.sparsity`` of every layer;
            ``"model"`` (needs ``calibration`` and one SQConfig with sparsity > 0) prunes that share
            of all the converted layers' weights together, each layer at the sparsity near it that
            its measured sensitivity favours (bits and group size as configured; the report's
            ``budget`` shows the allocation).
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"compress_ expects a torch.nn.Module, got {type(model).__name__}")
    spec: ConfigSpec = SQConfig() if config is None else config
    if not isinstance(spec, (SQConfig, Mapping)):
        raise TypeError("config must be an SQConfig or a mapping from layer names to SQConfig / None")
    if progress is not None and not callable(progress):
        raise TypeError("progress must be callable")
    if target_bpw is not None:
        if not isinstance(spec, SQConfig):
            raise TypeError("with target_bpw, config is one SQConfig (the base of the candidates), not a mapping")
        if config is None:
            spec = BUDGET_BASE
        if calibration is None:
            raise ValueError("target_bpw (budget mode) needs calibration data: pass calibration=<batches>")
    elif candidates is not None:
        raise ValueError("candidates apply to budget mode only (pass target_bpw)")
    if sparsity_scope not in ("layer", "model"):
        raise ValueError(f"sparsity_scope must be 'layer' or 'model', got {sparsity_scope!r}")
    if sparsity_scope == "model":
        if target_bpw is not None:
            raise ValueError(
                "sparsity_scope='model' and target_bpw exclude each other: budget mode chooses sparsities itself"
            )
        if not isinstance(spec, SQConfig):
            raise TypeError("with sparsity_scope='model', config is one SQConfig, not a mapping")
        if spec.sparsity <= 0:
            raise ValueError("sparsity_scope='model' needs a config with sparsity > 0")
        if calibration is None:
            raise ValueError("sparsity_scope='model' needs calibration data: pass calibration=<batches>")
    reports, plans = _plan(model, spec, filter_fn)
    batches = None
    if calibration is not None:  # one clear error for batches that do not fit, before any change
        batches = as_batches(calibration)
        with _eval_mode(model), torch.no_grad():
            check_batches(model, batches)
    budget = None
    if target_bpw is not None or sparsity_scope == "model":
        with _eval_mode(model):
            layers = {p.name: (p.module, p.kind) for p in plans}
            if target_bpw is not None:
                budget = plan_budget(model, layers, batches, target_bpw, spec, candidates=candidates, blocks=blocks)
            else:
                budget = plan_model_sparsity(model, layers, batches, spec, blocks=blocks)
        for p in plans:
            p.config = p.kind.configure(budget.configs[p.name])
    _fit_index_layers(model, plans, batches)
    calibrated = [p for p in plans if p.config.needs_calibration]
    if calibrated and batches is None:
        what = calibrated[0].config
        choice = f"method={what.method!r}" if what.method in calibrated_methods() else f"pruning={what.pruning!r}"
        raise ValueError(f"layer {calibrated[0].name!r}: " + calibration_needed(choice))

    clock = _Progress(progress, len(plans))
    if batches is None:
        _encode_plans(plans, executor, clock)
    else:
        _calibrate(model, plans, batches, blocks, executor, clock)
        plans = [p for p in plans if p.encoded]

    # Build every compressed layer before swapping any in: a layer that fails to build leaves the
    # model as it was.
    built = [p.kind.build(p.module, p.encoded, p.config) for p in plans]
    for p, new in zip(plans, built, strict=True):
        _set_submodule(model, p.name, new)
        p.report.converted = True
        p.report.stats = _layer_stats(p)
    return CompressionReport(reports, budget)


@contextlib.contextmanager
def _eval_mode(model: nn.Module) -> Iterator[None]:
    """``model`` in eval mode inside the block; every module's training flag restored after it."""
    flags = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield
    finally:
        for m, flag in flags:
            m.training = flag


def _plan(model: nn.Module, spec: ConfigSpec, filter_fn) -> tuple[list[LayerReport], list[_Plan]]:
    """A report line for every module with a weight, and a plan for each one to convert."""
    compressed = compressed_types()
    owners: dict[int, list[str]] = {}
    for name, module in model.named_modules():
        w = getattr(module, "weight", None)
        if isinstance(w, torch.Tensor) and not isinstance(module, compressed):
            owners.setdefault(id(w), []).append(name)

    reports: list[LayerReport] = []
    plans: list[_Plan] = []
    for name, module in model.named_modules():
        if isinstance(module, compressed):
            reports.append(LayerReport(name, type(module).__name__, False, "already compressed"))
            continue
        w = getattr(module, "weight", None)
        if not isinstance(w, torch.Tensor) or name == "":
            continue
        kind_name = type(module).__name__
        report = LayerReport(name, kind_name, False, shape=tuple(w.shape))
        reports.append(report)
        kind = kind_of(module)
        if kind is None:
            report.reason = f"{kind_name} layers are not supported ({_SUPPORTED} are)"
            continue
        if not kind.converts(module):
            report.reason = f"{kind_name} is a subclass of {type(module).__mro__[1].__name__} with its own forward"
            continue
        sharing = owners.get(id(w), [])
        if len(sharing) > 1:
            report.reason = f"weight is shared with {', '.join(n for n in sharing if n != name)} (tied weights)"
            continue
        if filter_fn is not None and not filter_fn(module, name):
            report.reason = "excluded by filter_fn"
            continue
        cfg, why = _config_for(name, kind, spec)
        if cfg is None:
            report.reason = why
            continue
        if not w.dtype.is_floating_point:
            report.reason = f"weight dtype {w.dtype} is not floating point"
            continue
        unsupported = kind.unsupported(module)
        if unsupported is not None:
            report.reason = unsupported
            continue
        plans.append(_Plan(name, module, kind, kind.configure(cfg), report))
    return reports, plans


class _Progress:
    """Calls the user's progress callback once per finished layer."""

    def __init__(self, callback: Callable[[LayerProgress], None] | None, total: int):
        self.callback, self.total, self.done, self.start = callback, total, 0, time.perf_counter()

    def finished(self, plan: _Plan) -> None:
        self.done += 1
        if self.callback is not None:
            self.callback(LayerProgress(plan.name, self.done, self.total, time.perf_counter() - self.start))


def _fit_index_layers(model: nn.Module, plans: list[_Plan], batches: list[Any] | None) -> None:
    """Give layers whose inputs are indices (embeddings) the data-free counterpart of a calibrated
    config. With calibration data, a calibrated pruning (Wanda, SparseGPT) becomes magnitude pruning
    weighted by how often the text looks each row up, which is what both reduce to on one-hot inputs
    (see :func:`sparsecodec.calibration.sequential.token_counts`); without, plain magnitude."""
    index_plans = [p for p in plans if p.config.needs_calibration and not p.kind.calibrated]
    weighted = [p for p in index_plans if p.config.pruning in CALIBRATED_PRUNINGS and p.config.sparsity > 0]
    counts = {}
    if weighted and batches is not None:
        with _eval_mode(model), torch.no_grad():
            counts = token_counts(model, batches, {p.name: p.module for p in weighted})
    for p in index_plans:
        p.config = p.config.data_free()
        if p.name in counts:
            p.keep = [frequency_weighted_mask(m, counts[p.name], p.config.sparsity) for m in p.kind.matrices(p.module)]
            pruning = "magnitude weighted by the calibration text's use of each row"
        else:
            pruning = "magnitude pruning"
        p.note = f"{p.kind.name} inputs are indices: fitted with method={p.config.method!r}, {pruning}"


def _encode_plans(
    plans: list[_Plan],
    executor: Executor | None,
    clock: _Progress,
    hessians: Mapping[str, list[np.ndarray]] | None = None,
) -> None:
    """Encode the plans' matrices (every matrix one task) and store the results on the plans."""
    tasks: list[tuple[_Plan, np.ndarray, dict[str, Any]]] = []
    for p in plans:
        for k, matrix in enumerate(p.kind.matrices(p.module)):
            kwargs = p.config.encode_kwargs()
            if p.keep is not None:
                kwargs.update(mask=p.keep[k], sparsity=None)
            if hessians is not None and p.config.needs_calibration:
                kwargs["hessian"] = hessians[p.name][k]
            tasks.append((p, matrix, kwargs))
    if executor is not None:
        futures = [executor.submit(_encode_task, m, kw) for _, m, kw in tasks]
        encoded = [EncodedWeight.from_bytes(f.result()) for f in futures]
    else:
        encoded = [encode(m, **kw) for _, m, kw in tasks]
    for p in plans:
        p.encoded = []
    for (p, _, _), enc in zip(tasks, encoded, strict=True):
        p.encoded.append(enc)
    for p in plans:
        clock.finished(p)


def _calibrate(model, plans: list[_Plan], batches: list[Any], blocks, executor, clock: _Progress) -> None:
    """Encode every plan in forward order on calibrated inputs (see sparsecodec.calibration.sequential);
    ``batches`` have been checked against the model.

    Decoded weights are written into the model as layers are done, so that later layers see them;
    the original weights are put back at the end, whatever happens, and the caller swaps in the
    compressed layers only once everything succeeded.
    """
    by_name = {p.name: p for p in plans}
    originals: dict[str, torch.Tensor] = {}

    def install(done: list[_Plan]) -> None:
        for p in done:
            originals.setdefault(p.name, p.module.weight.detach().clone())
            p.kind.assign(p.module, [decode(e) for e in p.encoded])

    def compress_stage(names: list[str], hessians: dict[str, list[np.ndarray]]) -> None:
        stage = [by_name[n] for n in names]
        _encode_plans(stage, executor, clock, hessians)
        install(stage)

    try:
        with _eval_mode(model), torch.no_grad():
            data_free = [p for p in plans if not p.config.needs_calibration]
            _encode_plans(data_free, executor, clock)
            install(data_free)
            targets = {p.name: p.module for p in plans if p.config.needs_calibration}
            if targets:
                pipeline = SequentialCalibration(model, batches, targets, blocks)
                pipeline.run(compress_stage)
                for name in pipeline.unused:
                    by_name[name].report.reason = "not called by the model's forward pass on the calibration data"
    finally:
        with torch.no_grad():
            for p in plans:
                if p.name in originals:
                    p.module.weight.data.copy_(originals[p.name])


def _layer_stats(p: _Plan) -> dict[str, Any]:
    encs = p.encoded
    n = sum(e.size for e in encs)

    def mean(key: str) -> float:
        return sum(e.stats[key] * e.size for e in encs) / n

    stats: dict[str, Any] = {
        "weights": n,
        **{k: mean(k) for k in ("total_bpw", "sparsity", "values_bpw", "patch_bpw", "mask_bpw", "scale_bpw")},
        "format": encs[0].mask.format_id,
        "config": p.config.to_dict(),
    }
    if p.note:
        stats["note"] = p.note
    return stats


def _set_submodule(model: nn.Module, name: str, new: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, new)
