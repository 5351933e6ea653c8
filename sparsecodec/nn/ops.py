"""The torch operators behind the compressed layers, registered with ``torch.library.custom_op``
(``sq_linear`` and its input gradient, ``sq_embedding``).

``sparsecodec::sq_linear(x, encoded, out_features, strategy)`` computes ``x @ W^T`` where W is the
weight held, XOR-coded, in ``encoded`` (the uint8 bytes of its stream). The op is opaque to
``torch.compile`` / ``torch.export`` (a fake kernel gives the output shape), differentiable in x
(the gradient is ``grad @ W``, another op) and never in the weight.

Parsed streams are cached by (address, length, CRC) of the bytes, so an op call costs a dictionary
lookup, not a parse; new bytes in the same storage (``load_state_dict``) change the CRC. In front of
that, a tensor seen before is answered from a table keyed by the tensor itself when its address and
length have not changed and, for an ordinary tensor, neither has its version counter (no in-place
write), or, for a tensor made under inference mode (which has no version counter), neither has the
CRC field its last four bytes hold. A tensor written in place through torch is parsed afresh (its
checksum checked again), never answered from the first cache.

The stream of an ordinary CPU tensor is parsed in place (:meth:`EncodedWeight.from_bytes` with
``in_place=True``): the weight reads its coded planes and bitmap mask inside the tensor's memory, so
a layer holds them once. Its version counter tells when torch writes into it; writes that bypass
torch (through ``.numpy()`` or ``.data``) are not seen, as autograd does not see them either. The
layers make their buffers ordinary tensors even under inference mode; an inference tensor passed to
the op, which has no version counter, is parsed from a copy.
"""

from __future__ import annotations

import ctypes
import weakref
from collections import OrderedDict
from typing import NamedTuple

import numpy as np
import torch

from ..formats.xor_codec import EncodedWeight
from ..matmul import matmul_rows, matmul_transposed

_CACHE: OrderedDict[tuple[int, int, int], EncodedWeight] = OrderedDict()
_CACHE_SIZE = 4096


class _Seen(NamedTuple):
    """What the tensor table remembers of a buffer tensor when its stream was parsed."""

    ref: weakref.ref
    address: int
    length: int
    version: int  # -1 for an inference tensor, whose check is `crc` instead
    crc: int
    parsed: EncodedWeight


_BY_TENSOR: dict[int, _Seen] = {}


def encoded_weight(encoded: torch.Tensor) -> EncodedWeight:
    """The EncodedWeight whose stream bytes are ``encoded`` (a CPU uint8 tensor), parsed once."""
    key = id(encoded)
    seen = _BY_TENSOR.get(key)
    if (
        seen is not None
        and seen.ref() is encoded
        and seen.address == encoded.data_ptr()
        and seen.length == encoded.numel()
        # the inference check reads memory the live tensor still owns: same address, same length
        and (encoded._version == seen.version if seen.version >= 0 else _crc_field(seen) == seen.crc)
    ):
        return seen.parsed
    if seen is not None and seen.ref() is encoded and seen.address == encoded.data_ptr():
        # written in place since: the parse under the old CRC views bytes that have changed
        _CACHE.pop((seen.address, seen.length, seen.crc), None)
    enc, crc = _parsed(encoded)
    version = -1 if encoded.is_inference() else encoded._version  # is_inference: no exception to pay for
    if version >= 0 or (encoded.is_cpu and encoded.is_contiguous()):  # the CRC field is read in place
        ref = weakref.ref(encoded, lambda _, key=key: _BY_TENSOR.pop(key, None))
        _BY_TENSOR[key] = _Seen(ref, encoded.data_ptr(), encoded.numel(), version, crc, enc)
    return enc


def _crc_field(seen: _Seen) -> int:
    """The stream's CRC field (its last four bytes, little-endian) as the tensor holds it now."""
    if seen.length < 4:
        return 0
    return int.from_bytes(ctypes.string_at(seen.address + seen.length - 4, 4), "little")


def _parsed(encoded: torch.Tensor) -> tuple[EncodedWeight, int]:
    """The parsed stream of ``encoded`` and the CRC field it was found under."""
    if encoded.dtype != torch.uint8 or encoded.dim() != 1:
        raise TypeError("the encoded weight must be a 1-D uint8 tensor of stream bytes")
    data = encoded.detach()
    if data.device.type != "cpu":
        data = data.cpu()
    raw = data.numpy()
    n = raw.size
    crc = int.from_bytes(raw[-4:].tobytes(), "little") if n >= 4 else 0  # the stream's own CRC field
    key = (encoded.data_ptr(), n, crc)  # the tensor's own address, also when `data` is a CPU copy
    enc = _CACHE.get(key)
    if enc is None:
        # in place where torch tracks writes into the tensor (its version counter), else from a copy
        tracked = encoded.is_cpu and not encoded.is_inference() and raw.flags.c_contiguous
        enc = EncodedWeight.from_bytes(raw, in_place=tracked)
        _CACHE[key] = enc
        if len(_CACHE) > _CACHE_SIZE:
            _CACHE.popitem(last=False)
    else:
        _CACHE.move_to_end(key)
    return enc, crc


def _numpy_rows(x: torch.Tensor) -> np.ndarray:
    if not x.requires_grad and x.is_cpu and x.dtype == torch.float32:
        arr = x.numpy()  # the common case: a view, whose layout numpy's attribute tells cheaply
        if arr.flags.c_contiguous:
            return arr
    return x.detach().to("cpu", torch.float32).contiguous().numpy()


def linear_forward(x: torch.Tensor, encoded: torch.Tensor, out_features: int, strategy: str) -> torch.Tensor:
    """``x @ W^T`` for the stream ``encoded``: the body of the ``sq_linear`` op, which layers also call
    directly when neither autograd nor a compiler is watching (a dispatcher round trip saved)."""
    enc = encoded_weight(encoded)
    cols = enc.shape[1]
    rows = _numpy_rows(x)
    if rows.shape[-1] != cols:
        raise ValueError(f"x has {rows.shape[-1]} features but the weight has {cols} input columns")
    if rows.ndim == 2:  # numpy's reshape costs a tenth of torch's, which a small layer would notice
        y = matmul_rows(rows, enc, strategy)
    else:
        y = matmul_rows(rows.reshape(-1, cols), enc, strategy).reshape(*rows.shape[:-1], out_features)
    y = torch.from_numpy(y)
    return y if x.dtype == torch.float32 and x.is_cpu else y.to(device=x.device, dtype=x.dtype)


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


# -------------------------------------------------------------------------------------------------
# sparsecodec::sq_embedding(indices, encoded, embedding_dim): rows ``indices`` of the table held,
# XOR-coded, in ``encoded``. Only the looked-up rows are decoded (past DIRECT_LOOKUP_ROWS indices each
# distinct one once). No input is differentiable (integer indices, stream bytes), so the op has no
# autograd formula: the table is frozen, as the compressed layers' weights are.

#: Up to this many indices a lookup decodes the rows as asked, repeats included: deduplicating them
#: (torch.unique) costs more than a short lookup's decode (a sentence's 17 tokens: 8 us of 20).
DIRECT_LOOKUP_ROWS = 64

_INDEX_DTYPES = frozenset(
    getattr(torch, name)
    for name in ("uint8", "int8", "int16", "int32", "int64", "uint16", "uint32", "uint64")
    if hasattr(torch, name)
)


def check_index_dtype(indices: torch.Tensor) -> None:
    """A TypeError unless ``indices`` is a tensor of an integer dtype."""
    if not isinstance(indices, torch.Tensor):
        raise TypeError(f"embedding indices must be a tensor, got {type(indices).__name__}")
    if indices.dtype not in _INDEX_DTYPES:
        raise TypeError(f"embedding indices must have an integer dtype, got {indices.dtype}")


def embedding_forward(indices: torch.Tensor, encoded: torch.Tensor, embedding_dim: int) -> torch.Tensor:
    """``weight[indices]`` (float32, shape ``(*indices.shape, embedding_dim)``) for the table held in the
    stream ``encoded``: the body of the ``sq_embedding`` op, which layers also call directly in plain
    eager mode. Raises TypeError for non-integer indices and ValueError for out-of-range ones."""
    from ..matmul import RowsOutOfRange, decode_row_set

    check_index_dtype(indices)
    enc = encoded_weight(encoded)
    n_rows, dim = enc.shape
    if dim != embedding_dim:
        raise ValueError(f"the stream holds rows of {dim} values, not embedding_dim={embedding_dim}")
    shape = (*indices.shape, dim)
    n = indices.numel()
    if n == 0:
        return torch.empty(shape, dtype=torch.float32, device=indices.device)
    flat = indices.detach().reshape(-1)
    if flat.device.type != "cpu":
        flat = flat.cpu()
    if flat.dtype != torch.int64:
        flat = flat.to(torch.int64)
    # a short lookup, or one without repeats, decodes the rows as asked; a long one with repeats each
    # distinct row once, then gathers
    unique, inverse = torch.unique(flat, sorted=True, return_inverse=True) if n > DIRECT_LOOKUP_ROWS else (flat, None)
    gather = unique.numel() < n
    try:
        out = torch.from_numpy(decode_row_set(enc, (unique if gather else flat).numpy()))
    except RowsOutOfRange as e:
        bad = e.lo if e.lo < 0 else e.hi
        raise ValueError(
            f"embedding index {bad} is out of range for a table of {n_rows} rows (valid: 0 .. {n_rows - 1})"
        ) from None
    if gather:
        out = out.index_select(0, inverse)
    return out.reshape(shape).to(indices.device)


@torch.library.custom_op("sparsecodec::sq_embedding", mutates_args=())
def sq_embedding(indices: torch.Tensor, encoded: torch.Tensor, embedding_dim: int) -> torch.Tensor:
    return embedding_forward(indices, encoded, embedding_dim)


@sq_embedding.register_fake
def _(indices, encoded, embedding_dim):
    check_index_dtype(indices)
    return indices.new_empty((*indices.shape, embedding_dim), dtype=torch.float32)
