"""Every named choice of the library, in one place: ``encode``, ``SQConfig``, the distortions and the
command line's flags all take their choices from here.

The registries behind the first three grow by registration (a new quantizer, value model or mask
format is one unit that registers itself); the functions read them at call time.
"""

from __future__ import annotations

from .masks import MASK_FORMATS
from .quantizers import CALIBRATED_METHODS, METHODS, SCALE_DTYPES, VALUE_MODELS

#: Slice layouts of the XOR-coded planes (see sparsecodec.formats.xor_codec.XorSpec).
LAYOUTS = ("linear", "scatter")
#: Matmul strategies of the compressed layers (see sparsecodec.matmul).
STRATEGIES = ("auto", "auto_int8", "sparse", "lut", "lut_stream", "dense", "lut_int8", "int8_tiles")
#: The strategies chosen per call by a cost model: among the exact kernels, or also the int8 ones.
AUTO_STRATEGIES = ("auto", "auto_int8")
#: How a sparsity chooses the pruned weights (magnitude needs no data; the others need calibration).
PRUNINGS = ("magnitude", "wanda", "sparsegpt")
#: The prunings that need calibration data.
CALIBRATED_PRUNINGS = ("wanda", "sparsegpt")


def methods() -> tuple[str, ...]:
    """Fitting methods (``encode(method=...)``)."""
    return tuple(METHODS)


def value_models() -> tuple[str, ...]:
    """Value models a stream may use."""
    return tuple(VALUE_MODELS)


def mask_formats() -> tuple[str, ...]:
    """Stored keep-mask formats (``encode(mask_format=...)``)."""
    return tuple(MASK_FORMATS)


def scale_dtypes() -> tuple[str, ...]:
    """Types the per-group parameters are stored in."""
    return tuple(SCALE_DTYPES)


def calibrated_methods() -> tuple[str, ...]:
    """Fitting methods that need calibration data (the Hessian of each layer's inputs)."""
    return tuple(m for m in METHODS if m in CALIBRATED_METHODS)
