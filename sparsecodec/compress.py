"""In-place conversion of a torch model: ``compress_(model, config)`` in the style of torchao's
``quantize_``, returning a report of what was converted and what was skipped, and why.

``config`` is one :class:`SQConfig` for every eligible layer, or a mapping from layer names to
configs: exact names first, then ``"re:<regex>"`` patterns in order, then ``"_default"``; a value of
``None`` skips the layer. Linear and Conv2d layers are converted (and Hugging Face's transposed
``Conv1D``, as a linear layer); every other module with a weight, and every weight shared by several
layers, is reported as skipped with the reason, never silently left alone.

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
from .nn.layers import SQConv2d, SQLinear
from .xor_codec import EncodedWeight, encode

ConfigSpec = SQConfig | Mapping[str, SQConfig | None]


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


def _is_hf_conv1d(module: nn.Module) -> bool:
    return (
        type(module).__name__ == "Conv1D"
        and hasattr(module, "nf")
        and isinstance(getattr(module, "weight", None), torch.Tensor)
    )


def _config_for(name: str, spec: ConfigSpec) -> tuple[SQConfig | None, str]:
    if isinstance(spec, SQConfig):
        return spec, ""
    if name in spec:
        return spec[name], "set to None for this layer"
    for key, cfg in spec.items():
        if key.startswith("re:") and re.fullmatch(key[3:], name):
            return cfg, f"set to None by pattern {key!r}"
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

    owners: dict[int, list[str]] = {}
    for name, module in model.named_modules():
        w = getattr(module, "weight", None)
        if isinstance(w, torch.Tensor) and not isinstance(module, (SQLinear, SQConv2d)):
            owners.setdefault(id(w), []).append(name)

    reports: list[LayerReport] = []
    plans: list[tuple[str, nn.Module, SQConfig, LayerReport]] = []
    for name, module in model.named_modules():
        if isinstance(module, (SQLinear, SQConv2d)):
            reports.append(LayerReport(name, type(module).__name__, False, "already compressed"))
            continue
        w = getattr(module, "weight", None)
        if not isinstance(w, torch.Tensor) or name == "":
            continue
        kind = type(module).__name__
        report = LayerReport(name, kind, False, shape=tuple(w.shape))
        reports.append(report)
        if not isinstance(module, (nn.Linear, nn.Conv2d)) and not _is_hf_conv1d(module):
            report.reason = f"{kind} layers are not supported (Linear, Conv2d and Hugging Face Conv1D are)"
            continue
        if type(module) not in (nn.Linear, nn.Conv2d) and not _is_hf_conv1d(module):
            report.reason = f"{kind} is a subclass of {type(module).__mro__[1].__name__} with its own forward"
            continue
        sharing = owners.get(id(w), [])
        if len(sharing) > 1:
            report.reason = f"weight is shared with {', '.join(n for n in sharing if n != name)} (tied weights)"
            continue
        if filter_fn is not None and not filter_fn(module, name):
            report.reason = "excluded by filter_fn"
            continue
        cfg, why = _config_for(name, spec)
        if cfg is None:
            report.reason = why
            continue
        if isinstance(module, nn.Conv2d) and module.weight.dtype not in (
            torch.float32,
            torch.float16,
            torch.bfloat16,
            torch.float64,
        ):
            report.reason = f"weight dtype {module.weight.dtype} is not floating point"
            continue
        plans.append((name, module, cfg, report))

    # Encode: every weight matrix is one task (a grouped convolution has one per group).
    tasks: list[tuple[int, np.ndarray, dict[str, Any]]] = []
    for i, (_, module, cfg, _) in enumerate(plans):
        for matrix in _matrices(module):
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

    for i, (name, module, cfg, report) in enumerate(plans):
        encs = per_plan[i]
        new = _compressed_module(module, encs, cfg)
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


def _matrices(module: nn.Module) -> list[np.ndarray]:
    w = module.weight.detach().to("cpu", torch.float32)
    if _is_hf_conv1d(module):  # stores (in, out)
        return [w.t().contiguous().numpy()]
    if isinstance(module, nn.Conv2d):
        g = module.groups
        per = module.out_channels // g
        return [w[k * per : (k + 1) * per].reshape(per, -1).numpy() for k in range(g)]
    return [w.numpy()]


def _compressed_module(module: nn.Module, encs: list[EncodedWeight], cfg: SQConfig) -> nn.Module:
    if isinstance(module, nn.Conv2d):
        return SQConv2d(
            encs,
            module.in_channels,
            module.out_channels,
            module.kernel_size,
            module.stride,
            module.padding,
            module.dilation,
            module.groups,
            module.bias,
            module.padding_mode,
            cfg.strategy,
        )
    return SQLinear(encs[0], getattr(module, "bias", None), cfg.strategy)


def _set_submodule(model: nn.Module, name: str, new: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, new)
