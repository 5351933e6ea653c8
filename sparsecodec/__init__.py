"""sparsecodec: pruned, quantised neural-network weights in compact, fixed-rate decodable formats.

Numpy-level API (importing it never imports torch)::

    import sparsecodec as sc
    enc = sc.encode(w, sparsity=0.9, bits=2)      # -> sc.EncodedWeight
    w_hat = sc.decode(enc)                         # float32, mask applied
    enc.stats["total_bpw"]
    enc2 = sc.EncodedWeight.from_bytes(enc.to_bytes())
"""

from __future__ import annotations

from typing import Any

from .config import SQConfig
from .formats.stream import FORMAT_VERSION, StreamError, peek_header
from .formats.xor_codec import EncodedWeight, decode, default_n_in, default_n_out, encode
from .info import __version__, build_info, get_num_threads, set_num_threads, set_simd_level
from .masks import BitmapMask, MaskFormat
from .masks.index_costs import index_costs
from .masks.lowrank import LowRankMask
from .masks.lowrank_search import lowrank_mask, retained_importance
from .masks.pruning import cubic_sparsity, global_magnitude_masks, magnitude_mask
from .matmul import matmul, matmul_transposed
from .quantizers import Quantized, dequantize, quantization_error, quantize

# The names of the first releases, kept: BCQ is one value model among several now.
BCQResult = Quantized
bcq_quantize = quantize
bcq_dequantize = dequantize

# Torch-dependent parts load on first use, so that importing sparsecodec never imports torch.
_LAZY = {"compress_": "compress", "CompressionReport": "compress", "save": "serialization", "load": "serialization"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module 'sparsecodec' has no attribute {name!r}")


__all__ = [
    "SQConfig",
    "compress_",
    "save",
    "load",
    "BCQResult",
    "BitmapMask",
    "EncodedWeight",
    "LowRankMask",
    "FORMAT_VERSION",
    "MaskFormat",
    "StreamError",
    "__version__",
    "bcq_dequantize",
    "bcq_quantize",
    "dequantize",
    "quantize",
    "Quantized",
    "build_info",
    "cubic_sparsity",
    "decode",
    "default_n_in",
    "default_n_out",
    "encode",
    "get_num_threads",
    "global_magnitude_masks",
    "index_costs",
    "lowrank_mask",
    "magnitude_mask",
    "matmul",
    "matmul_transposed",
    "peek_header",
    "quantization_error",
    "retained_importance",
    "set_num_threads",
    "set_simd_level",
]
