"""Keep-masks: the stored formats (bitmap, none, the low-rank binary index, registered by id), how
masks are chosen (magnitude pruning, schedules, the low-rank factor search) and what they cost
(bitmap, CSR, relative index)."""

from __future__ import annotations

from . import lowrank  # noqa: F401  (registers the "lowrank" mask format)
from .base import MASK_FORMATS, BitmapMask, MaskFormat, NoMask, mask_from_stream, register_mask_format

__all__ = ["MASK_FORMATS", "BitmapMask", "MaskFormat", "NoMask", "mask_from_stream", "register_mask_format"]
