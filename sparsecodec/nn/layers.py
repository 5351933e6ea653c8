"""Drop-in compressed layers: ``SQLinear`` for ``nn.Linear`` and ``SQConv2d`` for ``nn.Conv2d``.

Each layer persists one uint8 buffer per weight matrix: the self-describing stream of its
EncodedWeight (magic, version, CRC). ``state_dict`` / ``load_state_dict(strict=True)``,
``torch.load(weights_only=True)`` and safetensors therefore work on plain tensors, and loading
parses the stream (checking it) without ever re-encoding. The parsed weight reads its coded planes
and bitmap mask inside the buffer (format 3 streams; see ``ops``), so the layer holds them once. The
forward pass runs the ``sparsecodec::sq_linear`` op on the compressed form; gradients flow to the input and the bias,
never to the compressed weight.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F
from torch.nn.modules.utils import _pair

from ..config import SQConfig
from ..formats.xor_codec import EncodedWeight, decode, encode
from ..matmul import TILE_FLOATS, choose_strategy, run_time_nbytes
from ..options import AUTO_STRATEGIES, STRATEGIES
from . import ops

_FROZEN_MESSAGE = (
    "the weight of a compressed layer is stored XOR-coded and cannot be trained: gradients flow to the "
    "input and the bias only. Fine-tune before compressing (e.g. with sparsecodec.deeptwist), or convert "
    "back with to_linear() / to_conv2d() / to_embedding()."
)


class _FrozenWeight(torch.autograd.Function):
    """Identity whose backward explains that the compressed weight has no gradient."""

    @staticmethod
    def forward(ctx, w):
        return w.view_as(w)

    @staticmethod
    def backward(ctx, grad):
        raise RuntimeError(_FROZEN_MESSAGE)


def _plain_eager(x: torch.Tensor) -> bool:
    """Whether x is a plain tensor in eager mode (not compiled, exported or traced), where the layers
    may take paths that the registered ops would not show a tracer."""
    return type(x) is torch.Tensor and not torch.compiler.is_compiling() and not torch.jit.is_tracing()


def _stream_buffer(n: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """An empty uint8 stream buffer of n bytes: 64-byte aligned (torch's allocations are), so that
    the parsed weight can view its words in place, and an ordinary tensor even under inference mode,
    whose version counter tells when it is written (``ops.encoded_weight``)."""
    with torch.inference_mode(False):
        return torch.empty(n, dtype=torch.uint8, device=device)


def _stream_tensor(enc: EncodedWeight) -> torch.Tensor:
    data = enc.to_bytes()
    out = _stream_buffer(len(data))
    out.numpy()[:] = np.frombuffer(data, dtype=np.uint8)
    return out


def _encode_matrix(weight: torch.Tensor, config: SQConfig) -> EncodedWeight:
    w = weight.detach().to("cpu", torch.float32).reshape(weight.shape[0], -1).numpy()
    return encode(w, **config.encode_kwargs())


class _CompressedStreams(nn.Module):
    """Shared handling of the stream buffers: replacing them on load, parsing, describing."""

    _stream_names: tuple[str, ...] = ()
    strategy: str = "auto"  # the matmul strategy (see sparsecodec.matmul), set by each layer

    def _set_streams(self, encs: list[EncodedWeight]) -> None:
        self._stream_names = tuple(f"encoded{i}" if len(encs) > 1 else "encoded" for i in range(len(encs)))
        self._stream_shapes = tuple(e.shape for e in encs)  # what the layer's other attributes assume
        for name, enc in zip(self._stream_names, encs, strict=True):
            self.register_buffer(name, _stream_tensor(enc))

    def encoded_weights(self) -> list[EncodedWeight]:
        """The parsed EncodedWeight of every stream buffer (cached)."""
        return [ops.encoded_weight(getattr(self, name)) for name in self._stream_names]

    def memory_nbytes(self) -> int:
        """Bytes the layer's weights hold at run time: the stream buffers (what ``state_dict``
        saves), their parsed EncodedWeights and the matmul caches built so far
        (:func:`sparsecodec.matmul.run_time_nbytes`). A buffer is counted once where its parsed
        weight views it; a layer loaded from a format 1 or 2 stream, or given an inference tensor
        as its buffer, holds the buffer and a parsed copy. Bias and other parameters are not included."""
        total = 0
        for name in self._stream_names:
            buffer, enc = getattr(self, name), ops.encoded_weight(getattr(self, name))
            viewed = enc.stream_span == (buffer.data_ptr(), buffer.numel())
            total += run_time_nbytes(enc) + (0 if viewed else buffer.numel())
        return total

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing, unexpected, errors):
        # A stream's length changes with its content: size the buffer to the incoming one first, so
        # the default copy succeeds, then check that it parses.
        for name in self._stream_names:
            key = prefix + name
            if key in state_dict and isinstance(state_dict[key], torch.Tensor):
                incoming = state_dict[key]
                if incoming.dtype != torch.uint8 or incoming.dim() != 1:
                    errors.append(f"{key}: expected a 1-D uint8 stream, got {incoming.dtype} {tuple(incoming.shape)}")
                    continue
                setattr(self, name, _stream_buffer(incoming.numel(), getattr(self, name).device))
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing, unexpected, errors)
        for name, shape in zip(self._stream_names, self._stream_shapes, strict=True):
            try:
                enc = ops.encoded_weight(getattr(self, name))
            except ValueError as exc:
                errors.append(f"{prefix + name}: {exc}")
                continue
            if enc.shape != shape:
                errors.append(f"{prefix + name}: the stream holds a {enc.shape} weight, this layer a {shape} one")

    def _matmul(self, x: torch.Tensor, encoded: torch.Tensor, out_features: int) -> torch.Tensor:
        """``x @ W^T`` for the stream ``encoded`` through the ``sq_linear`` op, or, in plain eager
        inference, through the op's body without the dispatcher's overhead."""
        if _plain_eager(x) and not x.requires_grad:
            return ops.linear_forward(x, encoded, out_features, self.strategy)
        # autograd, tracing, compiling, tensor subclasses: the registered op
        return torch.ops.sparsecodec.sq_linear(x, encoded, out_features, self.strategy)

    def _describe(self) -> str:
        encs = self.encoded_weights()
        n = sum(e.size for e in encs)
        bpw = sum(e.stats["total_bpw"] * e.size for e in encs) / n
        sparsity = sum(e.stats["sparsity"] * e.size for e in encs) / n
        e0 = encs[0]
        return f"bits={e0.bits}, sparsity={sparsity:.3f}, bits_per_weight={bpw:.3f}, mask={e0.mask.format_id}"


class SQLinear(_CompressedStreams):
    """``y = x W^T + b`` with W held XOR-coded (a drop-in for ``nn.Linear``).

    Build with :meth:`from_linear`; ``strategy`` picks the matmul kernel (see
    :func:`sparsecodec.matmul`).
    """

    def __init__(self, encoded: EncodedWeight, bias: torch.Tensor | None = None, strategy: str = "auto"):
        super().__init__()
        if not isinstance(encoded, EncodedWeight):
            raise TypeError(f"SQLinear needs an EncodedWeight, got {type(encoded).__name__}")
        self.out_features, self.in_features = encoded.shape
        self.strategy = strategy
        self._set_streams([encoded])
        if bias is not None:
            if tuple(bias.shape) != (self.out_features,):
                raise ValueError(f"bias must have shape ({self.out_features},), got {tuple(bias.shape)}")
            self.bias = nn.Parameter(bias.detach().clone().to(torch.float32))
        else:
            self.register_parameter("bias", None)

    @classmethod
    def from_linear(cls, linear: nn.Linear, config: SQConfig | None = None, *, encoded: EncodedWeight | None = None):
        """Compress an ``nn.Linear`` (or use an already encoded weight of the same shape)."""
        if not isinstance(linear, nn.Linear):
            raise TypeError(f"from_linear expects an nn.Linear, got {type(linear).__name__}")
        config = config or SQConfig()
        enc = encoded if encoded is not None else _encode_matrix(linear.weight, config)
        if enc.shape != tuple(linear.weight.shape):
            raise ValueError(f"encoded weight shape {enc.shape} does not match {tuple(linear.weight.shape)}")
        return cls(enc, linear.bias, config.strategy)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # the module's dicts read directly: nn.Module's attribute lookup for a buffer or parameter
        # costs a microsecond, a tenth of a small layer's whole product at batch 1
        encoded, bias = self._buffers["encoded"], self._parameters["bias"]
        if _plain_eager(x) and not x.requires_grad:
            y = ops.linear_forward(x, encoded, self.out_features, self.strategy)
            return y if bias is None else y.add_(bias)  # y is a fresh tensor of ours
        y = self._matmul(x, encoded, self.out_features)
        return y if bias is None else y + bias

    @property
    def weight(self) -> torch.Tensor:
        """The decoded weight (read-only: backpropagating into it raises a clear error)."""
        dense = torch.from_numpy(decode(self.encoded_weights()[0])).to(self.encoded.device)
        return _FrozenWeight.apply(dense.requires_grad_())

    def to_linear(self) -> nn.Linear:
        """An ``nn.Linear`` holding the decoded weight."""
        lin = nn.Linear(self.in_features, self.out_features, bias=self.bias is not None)
        with torch.no_grad():
            lin.weight.copy_(torch.from_numpy(decode(self.encoded_weights()[0])))
            if self.bias is not None:
                lin.bias.copy_(self.bias)
        return lin

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}, "
            + self._describe()
        )


class SQConv2d(_CompressedStreams):
    """``nn.Conv2d`` with its weight held XOR-coded (one stream per group of channels).

    Takes every ``nn.Conv2d`` argument; computed as unfold (im2col) followed by the compressed
    matmul, or directly as a matmul over channels for 1x1 kernels with unit stride and no padding.
    In eager mode, when the output positions far outnumber the weights (strategy ``"auto"`` by the
    matmul cost model, or ``"dense"``) and the weight fits one decoded tile (TILE_FLOATS), the
    weight is decoded for the call and torch's own convolution runs instead of the unfold.
    """

    def __init__(
        self,
        encoded: list[EncodedWeight],
        in_channels: int,
        out_channels: int,
        kernel_size: Any,
        stride: Any = 1,
        padding: Any = 0,
        dilation: Any = 1,
        groups: int = 1,
        bias: torch.Tensor | None = None,
        padding_mode: str = "zeros",
        strategy: str = "auto",
    ):
        super().__init__()
        self.in_channels, self.out_channels, self.groups = in_channels, out_channels, groups
        self.kernel_size, self.stride, self.dilation = _pair(kernel_size), _pair(stride), _pair(dilation)
        self.padding = padding if isinstance(padding, str) else _pair(padding)
        if padding_mode not in ("zeros", "reflect", "replicate", "circular"):
            raise ValueError(f"padding_mode must be zeros, reflect, replicate or circular, got {padding_mode!r}")
        if isinstance(self.padding, str) and self.padding not in ("same", "valid"):
            raise ValueError(f"padding must be an int, a pair, 'same' or 'valid', got {padding!r}")
        if self.padding == "same" and self.stride != (1, 1):
            raise ValueError("padding='same' is not supported for strided convolutions (as in torch)")
        self.padding_mode, self.strategy = padding_mode, strategy
        kh, kw = self.kernel_size
        expected = (out_channels // groups, in_channels // groups * kh * kw)
        if len(encoded) != groups or any(e.shape != expected for e in encoded):
            raise ValueError(f"expected {groups} encoded weights of shape {expected}")
        self._set_streams(encoded)
        if bias is not None:
            self.bias = nn.Parameter(bias.detach().clone().to(torch.float32))
        else:
            self.register_parameter("bias", None)

    @classmethod
    def from_conv2d(cls, conv: nn.Conv2d, config: SQConfig | None = None):
        if not isinstance(conv, nn.Conv2d):
            raise TypeError(f"from_conv2d expects an nn.Conv2d, got {type(conv).__name__}")
        config = config or SQConfig()
        g = conv.groups
        per = conv.out_channels // g
        encs = [_encode_matrix(conv.weight[i * per : (i + 1) * per], config) for i in range(g)]
        return cls(
            encs,
            conv.in_channels,
            conv.out_channels,
            conv.kernel_size,
            conv.stride,
            conv.padding,
            conv.dilation,
            g,
            conv.bias,
            conv.padding_mode,
            config.strategy,
        )

    def _pads(self) -> list[int]:
        """(left, right, top, bottom) padding as nn.Conv2d applies it ('same' and 'valid' included)."""
        if self.padding == "valid":
            return [0, 0, 0, 0]
        if self.padding == "same":
            pads = []
            for d, k in zip(reversed(self.dilation), reversed(self.kernel_size), strict=True):
                total = d * (k - 1)
                pads += [total // 2, total - total // 2]
            return pads
        return [self.padding[1], self.padding[1], self.padding[0], self.padding[0]]

    def _padded(self, x: torch.Tensor) -> torch.Tensor:
        """x padded as nn.Conv2d would (all modes); the unfold then pads nothing."""
        pads = self._pads()
        if not any(pads):
            return x
        mode = "constant" if self.padding_mode == "zeros" else self.padding_mode
        return F.pad(x, pads, mode=mode)

    def _output_size(self, x: torch.Tensor) -> tuple[int, int]:
        (kh, kw), (dh, dw), (sh, sw) = self.kernel_size, self.dilation, self.stride
        left, right, top, bottom = self._pads()
        h, w = x.shape[2] + top + bottom, x.shape[3] + left + right
        return (h - dh * (kh - 1) - 1) // sh + 1, (w - dw * (kw - 1) - 1) // sw + 1

    def _decoded_conv_is_faster(self, x: torch.Tensor) -> bool:
        """Whether to decode the whole weight and run torch's convolution: the decoded-tile strategy,
        for a weight that fits one tile and (strategy auto) output positions enough to pay for it."""
        if self.strategy not in (*AUTO_STRATEGIES, "dense"):
            return False
        encs = self.encoded_weights()
        if sum(e.size for e in encs) > TILE_FLOATS:
            return False
        h_out, w_out = self._output_size(x)
        positions = x.shape[0] * h_out * w_out
        return self.strategy == "dense" or all(choose_strategy(e, positions, self.strategy) == "dense" for e in encs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4:
            raise ValueError(f"SQConv2d expects (N, C, H, W) input, got shape {tuple(x.shape)}")
        n = x.shape[0]
        per_out = self.out_channels // self.groups
        names = self._stream_names
        if _plain_eager(x) and self._decoded_conv_is_faster(x):
            # Eager, with far more output positions than weights: decode the weight for this call only
            # and let torch's convolution run in float32, as the matmul does (equal within rounding).
            weight = np.concatenate([decode(e) for e in self.encoded_weights()])
            shape = (self.out_channels, self.in_channels // self.groups, *self.kernel_size)
            w = torch.from_numpy(weight).reshape(shape).to(x.device)
            if self.padding_mode == "zeros":  # torch pads as part of the convolution
                out = F.conv2d(x.float(), w, None, self.stride, self.padding, self.dilation, self.groups)
            else:
                out = F.conv2d(self._padded(x).float(), w, None, self.stride, 0, self.dilation, self.groups)
            out = out.to(x.dtype)
        elif self.kernel_size == (1, 1) and self.stride == (1, 1) and self.groups == 1 and not any(self._pads()):
            h, w = x.shape[2:]
            rows = x.permute(0, 2, 3, 1).reshape(-1, self.in_channels)
            y = self._matmul(rows, getattr(self, names[0]), per_out)
            out = y.reshape(n, h, w, self.out_channels).permute(0, 3, 1, 2)
        else:
            xp = self._padded(x)
            h_out, w_out = self._output_size(x)
            per_in = self.in_channels // self.groups
            outs = []
            for g, name in enumerate(names):
                xg = xp[:, g * per_in : (g + 1) * per_in]
                cols = F.unfold(xg, self.kernel_size, dilation=self.dilation, stride=self.stride)  # (N, K, L)
                y = self._matmul(cols.transpose(1, 2), getattr(self, name), per_out)
                outs.append(y.transpose(1, 2))  # (N, per_out, L)
            out = torch.cat(outs, dim=1).reshape(n, self.out_channels, h_out, w_out)
        if self.bias is not None:
            out = out + self.bias.reshape(1, -1, 1, 1)
        return out.contiguous()

    @property
    def weight(self) -> torch.Tensor:
        """The decoded weight (out, in / groups, kh, kw), read-only."""
        dense = np.concatenate([decode(e) for e in self.encoded_weights()])
        shape = (self.out_channels, self.in_channels // self.groups, *self.kernel_size)
        return _FrozenWeight.apply(torch.from_numpy(dense).reshape(shape).requires_grad_())

    def to_conv2d(self) -> nn.Conv2d:
        conv = nn.Conv2d(
            self.in_channels,
            self.out_channels,
            self.kernel_size,
            self.stride,
            self.padding,
            self.dilation,
            self.groups,
            self.bias is not None,
            self.padding_mode,
        )
        with torch.no_grad():
            conv.weight.copy_(self.weight.detach())
            if self.bias is not None:
                conv.bias.copy_(self.bias)
        return conv

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
            f"padding={self.padding}, dilation={self.dilation}, groups={self.groups}, "
            f"padding_mode={self.padding_mode}, bias={self.bias is not None}, " + self._describe()
        )


def set_strategy(model: torch.nn.Module, strategy: str) -> int:
    """Set the matmul strategy of every compressed layer of ``model`` (e.g. ``"auto_int8"`` for the
    int8 kernels, on AVX-512 CPUs); returns how many layers were changed."""
    if strategy not in STRATEGIES:
        raise ValueError(f"strategy must be one of {STRATEGIES}, got {strategy!r}")
    layers = [m for m in model.modules() if isinstance(m, (SQLinear, SQConv2d))]
    for m in layers:
        m.strategy = strategy
    return len(layers)
