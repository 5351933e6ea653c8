"""Saving and loading a whole compressed model as one safetensors file.

The file holds the model's ``state_dict`` (the compressed layers' stream bytes are uint8 tensors)
and, in its string metadata, which modules are compressed and how to rebuild them. ``load`` rebuilds
those modules on a freshly constructed model of the same architecture and loads the tensors: the
streams are parsed and checked, never re-encoded.
"""

from __future__ import annotations

import json
import os
from typing import Any

import torch
from torch import nn

from .inspection import FILE_FORMAT as FORMAT
from .inspection import FILE_FORMAT_VERSION as FORMAT_VERSION
from .inspection import TENSOR_CRC_KEY, tensor_checksums
from .nn.registry import compressed_kind, rebuild


def _raw_bytes(tensors: dict[str, torch.Tensor]) -> dict[str, bytes]:
    """Each tensor's bytes as safetensors stores them (contiguous, little-endian on this machine)."""
    return {name: t.contiguous().reshape(-1).view(torch.uint8).numpy().tobytes() for name, t in tensors.items()}


def _module_spec(module: nn.Module) -> dict[str, Any]:
    kind = compressed_kind(module)
    if kind is None:
        raise TypeError(f"not a compressed module: {type(module).__name__}")
    return kind.spec(module)


def save(model: nn.Module, path: str | os.PathLike) -> None:
    """Write ``model`` (with its compressed layers) to a safetensors file."""
    from safetensors.torch import save_file

    compressed = {name: _module_spec(m) for name, m in model.named_modules() if compressed_kind(m) is not None}
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    meta = {
        "format": FORMAT,
        "format_version": str(FORMAT_VERSION),
        "compressed_modules": json.dumps(compressed),
        TENSOR_CRC_KEY: tensor_checksums(_raw_bytes(tensors)),
    }
    save_file(tensors, os.fspath(path), metadata=meta)


def load(path: str | os.PathLike, model: nn.Module, *, strict: bool = True) -> nn.Module:
    """Install the compressed layers saved in ``path`` into ``model`` (a freshly built instance of the
    same architecture) and load every tensor. Returns the model."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    path = os.fspath(path)
    try:
        with safe_open(path, framework="pt") as f:
            meta = f.metadata() or {}
    except Exception as exc:  # safetensors raises its own error types for foreign or damaged files
        raise ValueError(f"{path} is not a readable safetensors file: {exc}") from None
    if meta.get("format") != FORMAT:
        raise ValueError(f"{path} is not a sparsecodec model file (metadata format is {meta.get('format')!r})")
    version = int(meta.get("format_version", "0"))
    if version > FORMAT_VERSION:
        raise ValueError(f"{path} uses model-file version {version}; this sparsecodec reads up to {FORMAT_VERSION}")
    specs = json.loads(meta.get("compressed_modules", "{}"))
    tensors = load_file(path)
    if TENSOR_CRC_KEY in meta:  # every tensor, dense ones included, as it was saved
        expected = json.loads(meta[TENSOR_CRC_KEY])
        actual = json.loads(tensor_checksums(_raw_bytes(tensors)))
        damaged = sorted(name for name in expected if actual.get(name) != expected[name])
        if damaged:
            raise ValueError(f"{path} is damaged: CRC32 mismatch in tensor(s) {', '.join(damaged)}")
    for name, spec in specs.items():
        _set_submodule(model, name, _rebuild(name, spec, tensors))
    model.load_state_dict(tensors, strict=strict)
    return model


def _rebuild(name: str, spec: dict[str, Any], tensors: dict[str, torch.Tensor]) -> nn.Module:
    """The compressed layer ``name`` as its spec describes it (see :mod:`sparsecodec.nn.registry`)."""
    try:
        return rebuild(spec, tensors, f"{name}." if name else "")
    except KeyError as exc:
        raise ValueError(f"the file is damaged: layer {name!r} lacks {exc}") from None


def _set_submodule(model: nn.Module, name: str, new: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, new)
