"""Reading what ``sparsecodec compress`` is given, as a torch module to convert in place.

Accepted inputs:

* a Hugging Face model directory (``config.json`` and ``*.safetensors``), built with transformers'
  ``AutoModel`` (see :mod:`.hf_model`);
* a ``torch.save``d module (a pickle: loading it runs code from the file, so it needs
  ``trust_pickle``);
* a ``torch.save``d state_dict or a safetensors file, with ``model_factory`` (``"package.module:callable"``)
  building the module the weights belong to, loaded with ``strict=True``;
* the same weights without a factory: every 2-D floating ``*.weight`` (with its ``*.bias``) is then
  taken as a linear layer's weight; other tensors are kept as they are. A convolution's stride and
  padding are not in a weights file, so 4-D weights are kept with a note saying why.
"""

from __future__ import annotations

import importlib
import os
import pathlib
import pickle
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from .errors import CLIError, first_line
from .hf_model import is_model_dir, load_pretrained

_ZIP_MAGIC = b"PK\x03\x04"
_PICKLE_PROTOCOL = 0x80
# Keys under which training checkpoints commonly nest the model's state_dict.
_CHECKPOINT_KEYS = ("state_dict", "model_state_dict", "model")


@dataclass
class LoadedModel:
    """The module to compress, what it was read as, and notes on tensors that cannot be compressed.

    ``pretrained_dir`` is the Hugging Face model directory the model was built from (its tokenizer
    tokenises calibration text), or None for a file input.
    """

    model: nn.Module
    description: str
    weights_only: bool
    notes: dict[str, str] = field(default_factory=dict)
    pretrained_dir: pathlib.Path | None = None


def load_model(path: str | os.PathLike, model_factory: str | None = None, trust_pickle: bool = False) -> LoadedModel:
    """The module ``path`` describes (see the module docstring); :class:`CLIError` for anything the
    user can fix."""
    p = pathlib.Path(path)
    if p.is_dir():
        return _load_model_dir(p, model_factory)
    if not p.is_file():
        raise CLIError(f"{p}: no such file")
    with p.open("rb") as f:
        head = f.read(4)
    if head == _ZIP_MAGIC or (head[:1] and head[0] == _PICKLE_PROTOCOL):
        obj = _torch_load(p, trust_pickle)
    else:
        obj = _safetensors_load(p)

    if isinstance(obj, nn.Module):
        if model_factory:
            raise CLIError(f"{p} holds a whole module; --model is only for state_dict or safetensors inputs", 2)
        return LoadedModel(obj, f"{type(obj).__name__} module (torch.save)", False)
    weights = _state_dict_of(obj, p)
    if model_factory:
        model = build_model(model_factory)
        try:
            model.load_state_dict(weights, strict=True)
        except RuntimeError as exc:
            raise CLIError(f"the weights in {p} do not fit {model_factory}: {_summary(exc)}") from None
        return LoadedModel(model, f"{type(model).__name__} from {model_factory}, weights from {p.name}", False)
    model, notes = module_from_weights(weights)
    description = f"{len(weights)} tensors (weights only)"
    if is_model_dir(p.parent):
        description += (
            f"; {p.parent} is a Hugging Face model directory: pass it as IN to compress the model's layers "
            "as what they are (embeddings included)"
        )
    return LoadedModel(model, description, True, notes)


def _load_model_dir(p: pathlib.Path, model_factory: str | None) -> LoadedModel:
    if not is_model_dir(p):
        raise CLIError(
            f"{p} is a directory without a config.json; a directory is read only as a Hugging Face model "
            "directory (config.json and *.safetensors weights)"
        )
    if model_factory:
        raise CLIError(f"{p} is a Hugging Face model directory, built from its config.json; --model is not used", 2)
    model = load_pretrained(p)
    model_type = getattr(getattr(model, "config", None), "model_type", None) or "?"
    return LoadedModel(model, f"{type(model).__name__} ({model_type}, Hugging Face directory)", False, pretrained_dir=p)


def _torch_load(p: pathlib.Path, trust_pickle: bool) -> Any:
    try:
        return torch.load(p, map_location="cpu", weights_only=not trust_pickle)
    except pickle.UnpicklingError as exc:
        if not trust_pickle and "weights only" in str(exc).lower():
            raise CLIError(
                f"{p} holds pickled Python objects (e.g. a whole nn.Module); loading them runs code from the file. "
                "If you trust it, add --trust-pickle; or save model.state_dict() and pass --model MODULE:FACTORY"
            ) from None
        raise CLIError(f"{p} is damaged or not a torch file: {first_line(exc)}") from None
    except (RuntimeError, EOFError, OSError, ValueError, AttributeError, ModuleNotFoundError) as exc:
        raise CLIError(f"cannot load {p} (damaged, or not a torch file?): {first_line(exc)}") from None


def _safetensors_load(p: pathlib.Path) -> dict[str, torch.Tensor]:
    from safetensors import safe_open
    from safetensors.torch import load_file

    from ..inspection import FILE_FORMAT

    try:
        with safe_open(str(p), framework="pt") as f:
            meta = f.metadata() or {}
        tensors = load_file(str(p))
    except Exception as exc:  # safetensors raises its own error types for foreign or damaged files
        raise CLIError(f"{p} is neither a torch.save file nor a readable safetensors file: {first_line(exc)}") from None
    if meta.get("format") == FILE_FORMAT:
        raise CLIError(f"{p} is already a compressed sparsecodec model (see 'sparsecodec inspect {p}')")
    return tensors


def _state_dict_of(obj: Any, p: pathlib.Path) -> dict[str, torch.Tensor]:
    if isinstance(obj, Mapping) and not all(isinstance(v, torch.Tensor) for v in obj.values()):
        nested = [obj[k] for k in _CHECKPOINT_KEYS if isinstance(obj.get(k), Mapping)]
        obj = nested[0] if nested else obj
    if not isinstance(obj, Mapping) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CLIError(f"{p} holds a {type(obj).__name__}, not a module, a state_dict or a checkpoint with one")
    return {str(k): v for k, v in obj.items()}


def build_model(spec: str) -> nn.Module:
    """Call ``"package.module:callable"`` (importable from the current directory too) with no arguments."""
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise CLIError(f"--model must look like package.module:callable, got {spec!r}", 2)
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())  # as `python -m` does, so a models.py next to the user is found
    try:
        target: Any = importlib.import_module(module_name)
        for part in attr.split("."):
            target = getattr(target, part)
    except (ImportError, AttributeError) as exc:
        raise CLIError(f"cannot import --model {spec}: {first_line(exc)}") from None
    model = target()
    if not isinstance(model, nn.Module):
        raise CLIError(f"--model {spec} returned a {type(model).__name__}, not a torch.nn.Module")
    return model


def module_from_weights(weights: Mapping[str, torch.Tensor]) -> tuple[nn.Module, dict[str, str]]:
    """A module tree holding ``weights`` under the same names: an ``nn.Linear`` wherever a 2-D floating
    ``<name>.weight`` (and optionally ``<name>.bias``) stands alone, plain buffers elsewhere. Returns
    it with notes on the weights left as they are, by layer name."""
    linear_names = {
        key[: -len(".weight")]
        for key, t in weights.items()
        if key.endswith(".weight") and t.dim() == 2 and t.is_floating_point()
    }
    # A layer name that is also the prefix of other tensors (besides its bias) is not a plain linear layer.
    for key in weights:
        owner = key.rpartition(".")[0]
        while owner:
            parent = owner.rpartition(".")[0]
            if parent in linear_names:
                linear_names.discard(parent)
            owner = parent
    notes: dict[str, str] = {}
    root = nn.Module()
    for key, t in weights.items():  # in the file's order, so layers are listed as the file lists them
        owner, _, leaf = key.rpartition(".")
        if owner in linear_names:
            if leaf == "weight":
                _container(root, owner.rpartition(".")[0]).add_module(owner.rpartition(".")[2], _linear(weights, owner))
            continue
        _container(root, owner).register_buffer(leaf, t.detach().clone())
        if leaf == "weight" and t.dim() == 4:
            notes[owner] = "convolution weight: its stride and padding are not in a weights file (pass --model)"
        elif leaf == "weight" and t.dim() >= 2:
            notes[owner] = f"{t.dim()}-D {t.dtype} weight is not a linear layer's"
    return root, notes


def _linear(weights: Mapping[str, torch.Tensor], name: str) -> nn.Linear:
    w = weights[f"{name}.weight"]
    bias = weights.get(f"{name}.bias")
    layer = nn.Linear(w.shape[1], w.shape[0], bias=bias is not None, dtype=w.dtype)
    with torch.no_grad():
        layer.weight.copy_(w)
        if bias is not None:
            layer.bias.copy_(bias)
    return layer


def _container(root: nn.Module, path: str) -> nn.Module:
    module = root
    for part in path.split(".") if path else []:
        child = module._modules.get(part)
        if child is None:
            child = nn.Module()
            module.add_module(part, child)
        module = child
    return module


def _summary(exc: Exception) -> str:
    """The first specific line of a load_state_dict error (its first line is only a preamble)."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[1] if len(lines) > 1 else first_line(exc)
