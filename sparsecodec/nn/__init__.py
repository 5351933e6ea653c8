"""Torch layers and operators (importing this package imports torch)."""

from __future__ import annotations

from . import ops, registry
from .bandlimited import BandLimitedConv1d, BandLimitedConv2d
from .embedding import SQEmbedding
from .layers import SQConv2d, SQLinear, set_strategy
from .registry import LAYER_KINDS, LayerKind

__all__ = [
    "LAYER_KINDS",
    "BandLimitedConv1d",
    "BandLimitedConv2d",
    "LayerKind",
    "SQConv2d",
    "SQEmbedding",
    "SQLinear",
    "ops",
    "registry",
    "set_strategy",
]
