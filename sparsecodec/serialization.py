"""Saving and loading a whole compressed model as one safetensors file.

The file holds the model's ``state_dict`` (the compressed layers' stream bytes are uint8 tensors)
and, in its string metadata, which modules are compressed and how to rebuild them. ``load`` rebuilds
those modules on a freshly constructed model of the same architecture and loads the tensors: the
streams are parsed and checked, never re-encoded.

What is in the file is exactly the ``state_dict``: parameters and persistent buffers. Non-persistent
buffers (Hugging Face's ``embeddings.position_ids``, rotary caches) are not saved; the model's
constructor makes them. A state_dict entry that is the same tensor as an earlier one (a weight tied
between an embedding and an LM head) is stored once and recorded as an alias.
"""

from __future__ import annotations

import json
import os
from typing import Any

import torch
from torch import nn

from .inspection import FILE_FORMAT as FORMAT
from .inspection import FILE_FORMAT_VERSION as FORMAT_VERSION
from .inspection import TENSOR_ALIASES_KEY, TENSOR_CRC_KEY, tensor_checksums
from .nn.registry import compressed_kind, kind_by_class, rebuild

#: The version written for files without tensor aliases (every reader of the format reads it).
_PLAIN_VERSION = 1


def _raw_bytes(tensors: dict[str, torch.Tensor]) -> dict[str, bytes]:
    """Each tensor's bytes as safetensors stores them (contiguous, little-endian on this machine)."""
    return {name: t.contiguous().reshape(-1).view(torch.uint8).numpy().tobytes() for name, t in tensors.items()}


def _module_spec(module: nn.Module) -> dict[str, Any]:
    kind = compressed_kind(module)
    if kind is None:
        raise TypeError(f"not a compressed module: {type(module).__name__}")
    return kind.spec(module)


def _stored_tensors(state: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """The tensors to write and the aliases: a state_dict entry that is the same tensor (storage,
    offset, shape, strides, dtype) as an earlier entry is stored once, under the earlier name.

    Distinct views sharing one storage (rare) are each stored as a copy: safetensors refuses tensors
    that share memory.
    """
    tensors: dict[str, torch.Tensor] = {}
    aliases: dict[str, str] = {}
    first: dict[tuple[Any, ...], str] = {}
    by_storage: dict[int, list[str]] = {}
    for name, value in state.items():
        t = value.detach().cpu()
        if t.numel():
            ptr = t.untyped_storage().data_ptr()
            key = (ptr, t.storage_offset(), tuple(t.shape), t.stride(), t.dtype)
            if key in first:
                aliases[name] = first[key]
                continue
            first[key] = name
            by_storage.setdefault(ptr, []).append(name)
        tensors[name] = t
    for names in by_storage.values():
        if len(names) > 1:
            for name in names:
                tensors[name] = tensors[name].clone()
    return {name: t.contiguous() for name, t in tensors.items()}, aliases


def save(model: nn.Module, path: str | os.PathLike) -> None:
    """Write ``model`` (with its compressed layers) to a safetensors file: its ``state_dict`` and, in
    the metadata, how to rebuild each compressed layer and a CRC32 of every tensor."""
    from safetensors.torch import save_file

    if not isinstance(model, nn.Module):
        raise TypeError(f"save expects a torch.nn.Module, got {type(model).__name__}")
    compressed = {name: _module_spec(m) for name, m in model.named_modules() if compressed_kind(m) is not None}
    tensors, aliases = _stored_tensors(model.state_dict())
    meta = {
        "format": FORMAT,
        "format_version": str(FORMAT_VERSION if aliases else _PLAIN_VERSION),
        "compressed_modules": json.dumps(compressed),
        TENSOR_CRC_KEY: tensor_checksums(_raw_bytes(tensors)),
    }
    if aliases:
        meta[TENSOR_ALIASES_KEY] = json.dumps(aliases)
    save_file(tensors, os.fspath(path), metadata=meta)


def load(path: str | os.PathLike, model: nn.Module, *, strict: bool = True) -> nn.Module:
    """Install the compressed layers saved in ``path`` into ``model`` (a freshly built instance of the
    same architecture) and load every tensor. Returns the model.

    With ``strict`` (the default) every entry of the model's ``state_dict`` must be in the file and
    every tensor of the file must belong to the model, as ``load_state_dict(strict=True)`` checks.
    Non-persistent buffers are the model's own and are not expected in the file; a file that holds
    one anyway (written from a module where it was persistent) has it copied into the buffer.

    Raises ``ValueError`` for a foreign, damaged or too new file and for a compressed layer the model
    has no layer of that kind for (an Embedding saved where the model has a Linear, say).
    """
    from safetensors import safe_open
    from safetensors.torch import load_file

    if not isinstance(model, nn.Module):
        raise TypeError(f"load expects a torch.nn.Module to load into, got {type(model).__name__}")
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
    specs = _json_entry(meta, "compressed_modules", path)
    tensors = load_file(path)
    if TENSOR_CRC_KEY in meta:  # every tensor, dense ones included, as it was saved
        expected = _json_entry(meta, TENSOR_CRC_KEY, path)
        actual = json.loads(tensor_checksums(_raw_bytes(tensors)))
        damaged = sorted(name for name in expected if actual.get(name) != expected[name])
        if damaged:
            raise ValueError(f"{path} is damaged: CRC32 mismatch in tensor(s) {', '.join(damaged)}")
    for alias, stored in _json_entry(meta, TENSOR_ALIASES_KEY, path).items():
        if stored not in tensors:
            raise ValueError(f"{path} is damaged: tensor {alias!r} is an alias of {stored!r}, which is missing")
        tensors[alias] = tensors[stored]
    for name, spec in specs.items():
        _check_target(model, name, spec, path)
    for name, spec in specs.items():
        _set_submodule(model, name, _rebuild(name, spec, tensors))
    buffers = _non_persistent_buffers(model)
    extra = {key: tensors.pop(key) for key in list(tensors) if key in buffers}
    for key, t in extra.items():
        if tuple(t.shape) != tuple(buffers[key].shape):
            raise ValueError(
                f"{path}: tensor {key!r} has shape {tuple(t.shape)}, but the model's buffer of that name has "
                f"{tuple(buffers[key].shape)}"
            )
    model.load_state_dict(tensors, strict=strict)
    with torch.no_grad():
        for key, t in extra.items():
            buffers[key].copy_(t)
    return model


def _json_entry(meta: dict[str, str], key: str, path: str) -> dict[str, Any]:
    """A JSON-object metadata entry ({} when absent)."""
    try:
        value = json.loads(meta.get(key, "{}"))
    except json.JSONDecodeError:
        raise ValueError(f"{path} is damaged: its metadata entry {key!r} is not valid JSON") from None
    if not isinstance(value, dict):
        raise ValueError(f"{path} is damaged: its metadata entry {key!r} is not a JSON object")
    return value


def _check_target(model: nn.Module, name: str, spec: dict[str, Any], path: str) -> None:
    """Refuse a compressed layer the model has no place for: rebuilding it there would silently
    change what the model computes."""
    kind = kind_by_class(str(spec.get("class")))
    try:
        current = model.get_submodule(name)
    except AttributeError:
        raise ValueError(
            f"{path} holds compressed layer {name!r}, which {type(model).__name__} does not have "
            "(load into the architecture the file was saved from)"
        ) from None
    if not (kind.takes(current) or isinstance(current, kind.compressed)):
        raise ValueError(
            f"{path} holds layer {name!r} as {kind.compressed.__name__} (a compressed {kind.base.__name__}), "
            f"but that layer of {type(model).__name__} is {type(current).__name__}"
        )


def _non_persistent_buffers(model: nn.Module) -> dict[str, torch.Tensor]:
    """The model's non-persistent buffers by their full name (they are not in its state_dict)."""
    found: dict[str, torch.Tensor] = {}
    for prefix, module in model.named_modules(remove_duplicate=False):
        for name in module._non_persistent_buffers_set:
            buffer = module._buffers.get(name)
            if buffer is not None:
                found[f"{prefix}.{name}" if prefix else name] = buffer
    return found


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
