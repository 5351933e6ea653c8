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
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from .config import SQConfig
from .formats.xor_codec import EncodedWeight, encode
from .nn.registry import LAYER_KINDS, LayerKind, compressed_types, kind_of

ConfigSpec = SQConfig | Mapping[str, SQConfig | None]

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


def compress_(
    model: nn.Module,
    config: ConfigSpec | None = None,
    filter_fn: Callable[[nn.Module, str], bool] | None = None,
    *,
    executor: Executor | None = None,
) -> CompressionReport:
    """Replace eligible layers of ``model`` by compressed ones, in place; see the module docstring."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"compress_ expects a torch.nn.Module, got {type(model).__name__}")
    spec: ConfigSpec = SQConfig() if config is None else config
    if not isinstance(spec, (SQConfig, Mapping)):
        raise TypeError("config must be an SQConfig or a mapping from layer names to SQConfig / None")

    compressed = compressed_types()
    owners: dict[int, list[str]] = {}
    for name, module in model.named_modules():
        w = getattr(module, "weight", None)
        if isinstance(w, torch.Tensor) and not isinstance(module, compressed):
            owners.setdefault(id(w), []).append(name)

    reports: list[LayerReport] = []
    plans: list[tuple[str, nn.Module, LayerKind, SQConfig, LayerReport]] = []
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
        plans.append((name, module, kind, cfg, report))

    # Encode: every weight matrix is one task (a grouped convolution has one per group).
    tasks: list[tuple[int, np.ndarray, dict[str, Any]]] = []
    for i, (_, module, kind, cfg, _) in enumerate(plans):
        for matrix in kind.matrices(module):
            tasks.append((i, matrix, cfg.encode_kwargs()))
    if executor is not None:
        futures = [executor.submit(_encode_task, m, kw) for _, m, kw in tasks]
        streams = [f.result() for f in futures]
        encoded = [EncodedWeight.from_bytes(s) for s in streams]
    else:
        encoded = [encode(m, **kw) for _, m, kw in tasks]
    per_plan: dict[int, list[EncodedWeight]] = {}
    for (i, _, _), enc in zip(tasks, encoded, strict=True):
        per_plan.setdefault(i, []).append(enc)

    # Build every compressed layer before swapping any in: a layer that fails to build leaves the
    # model as it was.
    built = [kind.build(module, per_plan[i], cfg) for i, (_, module, kind, cfg, _) in enumerate(plans)]
    for i, ((name, _, _, cfg, report), new) in enumerate(zip(plans, built, strict=True)):
        encs = per_plan[i]
        _set_submodule(model, name, new)
        n = sum(e.size for e in encs)
        report.converted = True
        report.stats = {
            "weights": n,
            "total_bpw": sum(e.stats["total_bpw"] * e.size for e in encs) / n,
            "sparsity": sum(e.stats["sparsity"] * e.size for e in encs) / n,
            "values_bpw": sum(e.stats["values_bpw"] * e.size for e in encs) / n,
            "patch_bpw": sum(e.stats["patch_bpw"] * e.size for e in encs) / n,
            "mask_bpw": sum(e.stats["mask_bpw"] * e.size for e in encs) / n,
            "scale_bpw": sum(e.stats["scale_bpw"] * e.size for e in encs) / n,
            "format": encs[0].mask.format_id,
            "config": cfg.to_dict(),
        }
    return CompressionReport(reports)


def _set_submodule(model: nn.Module, name: str, new: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, new)
