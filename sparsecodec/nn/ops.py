"""The torch operators behind the compressed layers, registered with ``torch.library.custom_op``.

``sparsecodec::sq_linear(x, encoded, out_features, strategy)`` computes ``x @ W^T`` where W is the
weight held, XOR-coded, in ``encoded`` (the uint8 bytes of its stream). The op is opaque to
``torch.compile`` / ``torch.export`` (a fake kernel gives the output shape), differentiable in x
(the gradient is ``grad @ W``, another op) and never in the weight.

Parsed streams are cached by (address, length, CRC) of the bytes, so an op call costs a dictionary
lookup, not a parse; new bytes in the same storage (``load_state_dict``) change the CRC.
"""

from __future__ import annotations

from collections import OrderedDict

import numpy as np
import torch

from ..matmul import matmul, matmul_transposed
from ..xor_codec import EncodedWeight

_CACHE: OrderedDict[tuple[int, int, int], EncodedWeight] = OrderedDict()
_CACHE_SIZE = 4096


def encoded_weight(encoded: torch.Tensor) -> EncodedWeight:
    """The EncodedWeight whose stream bytes are ``encoded`` (a CPU uint8 tensor), parsed once."""
    if encoded.dtype != torch.uint8 or encoded.dim() != 1:
        raise TypeError("the encoded weight must be a 1-D uint8 tensor of stream bytes")
    data = encoded.detach()
    if data.device.type != "cpu":
        data = data.cpu()
    raw = data.numpy()
    n = raw.size
    crc = int.from_bytes(raw[-4:].tobytes(), "little") if n >= 4 else 0  # the stream's own CRC field
    key = (data.data_ptr(), n, crc)
    enc = _CACHE.get(key)
    if enc is None:
        enc = EncodedWeight.from_bytes(raw.tobytes())
        _CACHE[key] = enc
        if len(_CACHE) > _CACHE_SIZE:
            _CACHE.popitem(last=False)
    else:
        _CACHE.move_to_end(key)
    return enc


def _numpy_rows(x: torch.Tensor) -> np.ndarray:
    if x.dtype == torch.float32 and x.device.type == "cpu" and x.is_contiguous() and not x.requires_grad:
        return x.numpy()  # the common case, without four tensor calls
    return x.detach().to("cpu", torch.float32).contiguous().numpy()


def linear_forward(x: torch.Tensor, encoded: torch.Tensor, out_features: int, strategy: str) -> torch.Tensor:
    """``x @ W^T`` for the stream ``encoded``: the body of the ``sq_linear`` op, which layers also call
    directly when neither autograd nor a compiler is watching (a dispatcher round trip saved)."""
    enc = encoded_weight(encoded)
    lead = x.shape[:-1]
    y = matmul(_numpy_rows(x).reshape(-1, x.shape[-1]), enc, strategy=strategy)
    return torch.from_numpy(y).reshape(*lead, out_features).to(device=x.device, dtype=x.dtype)


@torch.library.custom_op("sparsecodec::sq_linear", mutates_args=())
def sq_linear(x: torch.Tensor, encoded: torch.Tensor, out_features: int, strategy: str) -> torch.Tensor:
    return linear_forward(x, encoded, out_features, strategy)


@sq_linear.register_fake
def _(x, encoded, out_features, strategy):
    return x.new_empty((*x.shape[:-1], out_features))


@torch.library.custom_op("sparsecodec::sq_linear_input_grad", mutates_args=())
def sq_linear_input_grad(grad: torch.Tensor, encoded: torch.Tensor, in_features: int) -> torch.Tensor:
    enc = encoded_weight(encoded)
    lead = grad.shape[:-1]
    g = matmul_transposed(_numpy_rows(grad).reshape(-1, grad.shape[-1]), enc)
    return torch.from_numpy(g).reshape(*lead, in_features).to(device=grad.device, dtype=grad.dtype)


@sq_linear_input_grad.register_fake
def _(grad, encoded, in_features):
    return grad.new_empty((*grad.shape[:-1], in_features))


def _setup_context(ctx, inputs, output):
    x, encoded, _, _ = inputs
    ctx.save_for_backward(encoded)
    ctx.in_features = x.shape[-1]


def _backward(ctx, grad):
    (encoded,) = ctx.saved_tensors
    return sq_linear_input_grad(grad, encoded, ctx.in_features), None, None, None


sq_linear.register_autograd(_backward, setup_context=_setup_context)
