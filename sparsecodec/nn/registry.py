"""The layer kinds sparsecodec compresses, in one place: which torch modules each kind takes, the
compressed layer it becomes, and how that layer is built, described in a saved file and rebuilt.

``compress_`` (conversion), ``sparsecodec.save`` / ``load`` (serialization) and ``summarize_model``
(inspection) all go through :data:`LAYER_KINDS`, so a new layer kind is one :class:`LayerKind`
registered here with :func:`register`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from ..config import SQConfig
from ..formats.xor_codec import EncodedWeight
from .embedding import SQEmbedding, lookup_config, unsupported_option
from .layers import SQConv2d, SQLinear
from .ops import encoded_weight

Tensors = Mapping[str, torch.Tensor]


@dataclass(frozen=True)
class LayerKind:
    """One kind of layer: ``base`` modules (and whatever ``accepts`` takes) become ``compressed`` ones.

    * ``matrices(module)``: the float32 matrices to encode (one per stream, in stream order);
    * ``build(module, encoded, config)``: the compressed layer from the module and its encoded matrices;
    * ``spec(layer)``: JSON-able constructor arguments of a compressed layer, saved in the file's
      metadata with ``"class"``; ``rebuild(spec, encoded, tensors, prefix)`` builds it back from them,
      the encoded streams and the file's tensors (the layer's own are under ``prefix``);
    * ``weight_shape(layer)``: the shape of the weight a compressed layer holds (as torch shapes it);
    * ``unsupported(module)``: why a module of this kind cannot be converted (an option the compressed
      layer cannot honour), or None;
    * ``accepts(module)``: modules taken besides exact ``base`` instances (Hugging Face's ``Conv1D``);
    * ``assign(module, matrices)``: write matrices (as ``matrices`` returns them) back into the
      module's weight, in place (calibration runs later layers on the decoded weights of earlier ones);
    * ``calibrated``: whether calibration statistics of the inputs apply (not to an embedding, whose
      inputs are indices);
    * ``configure(config)``: the config this kind encodes with, from the one it was given (an
      embedding fills in the slice layout its row lookups want).
    """

    name: str
    base: type[nn.Module]
    compressed: type[nn.Module]
    matrices: Callable[[nn.Module], list[np.ndarray]]
    build: Callable[[nn.Module, list[EncodedWeight], SQConfig], nn.Module]
    spec: Callable[[nn.Module], dict[str, Any]]
    rebuild: Callable[[dict[str, Any], list[EncodedWeight], Tensors, str], nn.Module]
    weight_shape: Callable[[nn.Module], tuple[int, ...]]
    assign: Callable[[nn.Module, list[np.ndarray]], None]
    unsupported: Callable[[nn.Module], str | None] = lambda module: None
    accepts: Callable[[nn.Module], bool] = lambda module: False
    calibrated: bool = True
    configure: Callable[[SQConfig], SQConfig] = lambda config: config

    @property
    def config_key(self) -> str:
        """The key of a ``compress_`` mapping that configures every layer of this kind (``"_linear"``)."""
        return f"_{self.name}"

    def takes(self, module: nn.Module) -> bool:
        """Whether ``module`` is of this kind (its own subclasses included)."""
        return isinstance(module, self.base) or self.accepts(module)

    def converts(self, module: nn.Module) -> bool:
        """Whether ``module`` is exactly of this kind: a subclass may have its own forward."""
        return type(module) is self.base or self.accepts(module)


LAYER_KINDS: dict[str, LayerKind] = {}


def register(kind: LayerKind) -> LayerKind:
    """Add a layer kind (its name and its compressed class must be new)."""
    if kind.name in LAYER_KINDS or any(k.compressed is kind.compressed for k in LAYER_KINDS.values()):
        raise ValueError(f"layer kind {kind.name!r} (or its compressed class) is already registered")
    LAYER_KINDS[kind.name] = kind
    return kind


def kind_of(module: nn.Module) -> LayerKind | None:
    """The kind a (not yet compressed) module belongs to, or None."""
    return next((k for k in LAYER_KINDS.values() if k.takes(module)), None)


def compressed_kind(module: nn.Module) -> LayerKind | None:
    """The kind of a compressed layer, or None if ``module`` is not one."""
    return next((k for k in LAYER_KINDS.values() if isinstance(module, k.compressed)), None)


def kind_by_class(class_name: str) -> LayerKind:
    """The kind whose compressed class is named ``class_name`` (as a saved spec names it)."""
    for k in LAYER_KINDS.values():
        if k.compressed.__name__ == class_name:
            return k
    raise ValueError(f"unknown compressed layer class {class_name!r}")


def compressed_types() -> tuple[type[nn.Module], ...]:
    return tuple(k.compressed for k in LAYER_KINDS.values())


def stream_keys(spec: Mapping[str, Any], prefix: str) -> list[str]:
    """The state_dict keys of a saved layer's streams (a grouped convolution has one per group)."""
    groups = int(spec.get("groups", 1))
    return [prefix + ("encoded" if groups == 1 else f"encoded{i}") for i in range(groups)]


def rebuild(spec: Mapping[str, Any], tensors: Tensors, prefix: str) -> nn.Module:
    """The compressed layer a saved spec describes, its streams parsed (checked) from ``tensors``."""
    kind = kind_by_class(spec["class"])
    encs = [encoded_weight(tensors[k]) for k in stream_keys(spec, prefix)]
    return kind.rebuild(dict(spec), encs, tensors, prefix)


# -------------------------------------------------------------------------------------------------
def is_hf_conv1d(module: nn.Module) -> bool:
    """Hugging Face's transposed linear layer (weight stored as (in, out))."""
    return (
        type(module).__name__ == "Conv1D"
        and hasattr(module, "nf")
        and isinstance(getattr(module, "weight", None), torch.Tensor)
    )


def _weight(module: nn.Module) -> torch.Tensor:
    return module.weight.detach().to("cpu", torch.float32)


def _linear_matrices(module: nn.Module) -> list[np.ndarray]:
    w = _weight(module)
    return [w.t().contiguous().numpy() if is_hf_conv1d(module) else w.numpy()]


def _assign_linear(module: nn.Module, matrices: list[np.ndarray]) -> None:
    w = torch.from_numpy(matrices[0])
    module.weight.data.copy_(w.t() if is_hf_conv1d(module) else w)


def _assign_conv2d(module: nn.Module, matrices: list[np.ndarray]) -> None:
    per = module.out_channels // module.groups
    for k, m in enumerate(matrices):
        module.weight.data[k * per : (k + 1) * per].copy_(torch.from_numpy(m).reshape(per, *module.weight.shape[1:]))


def _conv2d_matrices(module: nn.Module) -> list[np.ndarray]:
    w, g = _weight(module), module.groups
    per = module.out_channels // g
    return [w[k * per : (k + 1) * per].reshape(per, -1).numpy() for k in range(g)]


def _build_conv2d(module: nn.Conv2d, encs: list[EncodedWeight], cfg: SQConfig) -> SQConv2d:
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


def _conv2d_spec(m: SQConv2d) -> dict[str, Any]:
    return {
        "class": "SQConv2d",
        "in_channels": m.in_channels,
        "out_channels": m.out_channels,
        "kernel_size": list(m.kernel_size),
        "stride": list(m.stride),
        "padding": m.padding if isinstance(m.padding, str) else list(m.padding),
        "dilation": list(m.dilation),
        "groups": m.groups,
        "padding_mode": m.padding_mode,
        "bias": m.bias is not None,
        "strategy": m.strategy,
    }


def _rebuild_conv2d(spec: dict[str, Any], encs: list[EncodedWeight], tensors: Tensors, prefix: str) -> SQConv2d:
    padding = spec["padding"] if isinstance(spec["padding"], str) else tuple(spec["padding"])
    return SQConv2d(
        encs,
        spec["in_channels"],
        spec["out_channels"],
        tuple(spec["kernel_size"]),
        tuple(spec["stride"]),
        padding,
        tuple(spec["dilation"]),
        spec["groups"],
        tensors.get(prefix + "bias") if spec["bias"] else None,
        spec["padding_mode"],
        spec["strategy"],
    )


register(
    LayerKind(
        name="linear",
        base=nn.Linear,
        compressed=SQLinear,
        matrices=_linear_matrices,
        build=lambda m, encs, cfg: SQLinear(encs[0], getattr(m, "bias", None), cfg.strategy),
        spec=lambda m: {"class": "SQLinear", "strategy": m.strategy},
        rebuild=lambda spec, encs, tensors, prefix: SQLinear(encs[0], tensors.get(prefix + "bias"), spec["strategy"]),
        weight_shape=lambda m: (m.out_features, m.in_features),
        assign=_assign_linear,
        accepts=is_hf_conv1d,
    )
)
register(
    LayerKind(
        name="conv2d",
        base=nn.Conv2d,
        compressed=SQConv2d,
        matrices=_conv2d_matrices,
        build=_build_conv2d,
        spec=_conv2d_spec,
        rebuild=_rebuild_conv2d,
        weight_shape=lambda m: (m.out_channels, m.in_channels // m.groups, *m.kernel_size),
        assign=_assign_conv2d,
    )
)
register(
    LayerKind(
        name="embedding",
        base=nn.Embedding,
        compressed=SQEmbedding,
        matrices=lambda m: [_weight(m).numpy()],
        build=lambda m, encs, cfg: SQEmbedding(encs[0], m.padding_idx),
        spec=lambda m: {"class": "SQEmbedding", "padding_idx": m.padding_idx},
        rebuild=lambda spec, encs, tensors, prefix: SQEmbedding(encs[0], spec.get("padding_idx")),
        weight_shape=lambda m: (m.num_embeddings, m.embedding_dim),
        assign=lambda m, matrices: m.weight.data.copy_(torch.from_numpy(matrices[0])),
        unsupported=unsupported_option,
        calibrated=False,
        configure=lookup_config,
    )
)
