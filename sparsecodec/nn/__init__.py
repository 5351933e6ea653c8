"""Torch layers and operators (importing this package imports torch)."""

from __future__ import annotations

from . import ops
from .bandlimited import BandLimitedConv1d, BandLimitedConv2d
from .layers import SQConv2d, SQLinear

__all__ = ["BandLimitedConv1d", "BandLimitedConv2d", "SQConv2d", "SQLinear", "ops"]
