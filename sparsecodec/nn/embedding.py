"""``SQEmbedding``: an ``nn.Embedding`` whose table is held XOR-coded, as one sparsecodec stream.

The stream is one uint8 buffer (``encoded``), as in ``SQLinear``: ``state_dict`` /
``load_state_dict(strict=True)``, ``torch.load(weights_only=True)`` and safetensors work on plain
tensors. A lookup runs the ``sparsecodec::sq_embedding`` op, which decodes only the rows looked up
(a long lookup each distinct row once; a short one, such as a sentence's, the rows as asked, repeats
again, which costs less than finding them) and never the whole table. The table is frozen: lookups
give no gradient to it.
"""

from __future__ import annotations

import dataclasses
import operator

import torch
from torch import nn

from ..config import SQConfig
from ..formats.xor_codec import EncodedWeight, decode
from . import ops
from .layers import _CompressedStreams, _encode_matrix, _FrozenWeight, _plain_eager


def lookup_config(config: SQConfig) -> SQConfig:
    """``config`` with the slice layout a table wants when the config leaves it unset: ``"linear"``,
    so that a looked-up row decodes its own slices, not the whole scatter group it falls in (at
    S = 0.5, 17 rows of all-MiniLM-L6-v2's word embeddings: about 55 us instead of 1 ms, for 4.182
    bits per weight instead of 4.169: the linear layout's slices meet the mask's clusters and need a
    few more patches)."""
    return config if config.layout is not None else dataclasses.replace(config, layout="linear")


def unsupported_option(emb: nn.Embedding) -> str | None:
    """Why ``emb`` cannot become an SQEmbedding (an option the compressed table cannot honour), or None."""
    if emb.max_norm is not None:
        return f"max_norm={emb.max_norm} is not supported (it renormalises rows of the weight in place at lookup)"
    if emb.sparse:
        return "sparse=True is not supported (the compressed table has no gradient, sparse or dense)"
    if emb.scale_grad_by_freq:
        return "scale_grad_by_freq=True is not supported (the compressed table has no gradient to scale)"
    return None


def _padding_index(padding_idx: int | None, num_embeddings: int) -> int | None:
    """``padding_idx`` as ``nn.Embedding`` keeps it (negative counts from the end)."""
    if padding_idx is None:
        return None
    if isinstance(padding_idx, bool):
        raise TypeError("padding_idx must be an int or None, got bool")
    try:
        idx = operator.index(padding_idx)
    except TypeError:
        raise TypeError(f"padding_idx must be an int or None, got {type(padding_idx).__name__}") from None
    if not -num_embeddings <= idx < num_embeddings:
        raise ValueError(f"padding_idx must be within [-{num_embeddings}, {num_embeddings}), got {idx}")
    return idx + num_embeddings if idx < 0 else idx


class SQEmbedding(_CompressedStreams):
    """A lookup table (``nn.Embedding``) held XOR-coded; lookups decode only the rows they need.

    Build with :meth:`from_embedding`. ``padding_idx`` is kept as ``nn.Embedding`` keeps it: the
    output at that index is the (decoded) row, as ``F.embedding`` gives; it matters to gradients
    only, which the frozen table has none of. The output is float32 of shape
    ``(*indices.shape, embedding_dim)``, on the indices' device.
    """

    def __init__(self, encoded: EncodedWeight, padding_idx: int | None = None):
        super().__init__()
        if not isinstance(encoded, EncodedWeight):
            raise TypeError(f"SQEmbedding needs an EncodedWeight, got {type(encoded).__name__}")
        self.num_embeddings, self.embedding_dim = encoded.shape
        self.padding_idx = _padding_index(padding_idx, self.num_embeddings)
        self._set_streams([encoded])

    @classmethod
    def from_embedding(
        cls, emb: nn.Embedding, config: SQConfig | None = None, *, encoded: EncodedWeight | None = None
    ) -> SQEmbedding:
        """Compress an ``nn.Embedding`` (or use an already encoded table of the same shape).

        Raises ValueError for the options a frozen compressed table cannot honour: ``max_norm``,
        ``sparse=True`` and ``scale_grad_by_freq=True``.
        """
        if not isinstance(emb, nn.Embedding):
            raise TypeError(f"from_embedding expects an nn.Embedding, got {type(emb).__name__}")
        reason = unsupported_option(emb)
        if reason is not None:
            raise ValueError(f"cannot compress this nn.Embedding: {reason}")
        config = lookup_config(config or SQConfig())
        enc = encoded if encoded is not None else _encode_matrix(emb.weight, config)
        if enc.shape != tuple(emb.weight.shape):
            raise ValueError(f"encoded weight shape {enc.shape} does not match {tuple(emb.weight.shape)}")
        return cls(enc, emb.padding_idx)

    def forward(self, indices: torch.Tensor) -> torch.Tensor:
        ops.check_index_dtype(indices)
        if _plain_eager(indices):  # the op's body without the dispatcher's overhead
            return ops.embedding_forward(indices, self.encoded, self.embedding_dim)
        return torch.ops.sparsecodec.sq_embedding(indices, self.encoded, self.embedding_dim)

    @property
    def weight(self) -> torch.Tensor:
        """The decoded table (read-only: backpropagating into it raises a clear error)."""
        dense = torch.from_numpy(decode(self.encoded_weights()[0])).to(self.encoded.device)
        return _FrozenWeight.apply(dense.requires_grad_())

    def to_embedding(self) -> nn.Embedding:
        """An ``nn.Embedding`` holding the decoded table (and the same ``padding_idx``)."""
        emb = nn.Embedding(self.num_embeddings, self.embedding_dim, padding_idx=self.padding_idx)
        with torch.no_grad():
            emb.weight.copy_(torch.from_numpy(decode(self.encoded_weights()[0])))
        return emb

    def extra_repr(self) -> str:
        pad = f", padding_idx={self.padding_idx}" if self.padding_idx is not None else ""
        return f"{self.num_embeddings}, {self.embedding_dim}{pad}, " + self._describe()
