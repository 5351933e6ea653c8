"""Keep-mask storage formats behind one small interface.

An encoded weight stores its keep-mask (True = kept) in one of these formats. Each format can
produce the packed bit array the kernels use, says how many bits it stores, and serialises to a JSON
parameter dict plus one binary payload section of the stream.
"""

from __future__ import annotations

import functools
import inspect
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any, ClassVar

import numpy as np

from ..formats.bitpack import bytes_to_words, count_bits, pack_bits, unpack_bits, words_to_bytes
from ..formats.stream import StreamError

#: How a stream turns (a slice of) a payload into packed uint64 words: ``words(payload, n_bits)``.
WordReader = Callable[[Any, int], np.ndarray]
Shape = tuple[int, int]
Params = dict[str, Any]  # a mask format's stream-header parameters
Payload = bytes | memoryview  # its stream section (a read-only view of the stream)


class MaskFormat(ABC):
    """A keep-mask of shape (rows, cols) in some stored representation."""

    format_id: ClassVar[str]

    def __init__(self, shape: tuple[int, int]):
        self.shape = (int(shape[0]), int(shape[1]))
        self._bits: np.ndarray | None = None
        self._kept: int | None = None

    @property
    def size(self) -> int:
        return self.shape[0] * self.shape[1]

    def bits(self) -> np.ndarray:
        """The flattened mask as packed uint64 words (computed once)."""
        if self._bits is None:
            self._bits = self._decode_bits()
        return self._bits

    def held_bits(self) -> np.ndarray | None:
        """The packed keep bits if they are expanded already, else None (nothing is computed)."""
        return self._bits

    @property
    def nbytes(self) -> int:
        """Bytes this mask holds in memory: its stored form, and its keep bits once expanded (a
        bitmap's bits are its stored form; an all-kept mask expands to ones for the kernels)."""
        return (0 if self._bits is None else self._bits.nbytes) + self._factor_nbytes()

    def _factor_nbytes(self) -> int:
        """Bytes of what a format stores besides the keep bits (none for a bitmap)."""
        return 0

    @property
    def kept(self) -> int:
        """Number of kept weights."""
        if self._kept is None:
            self._kept = count_bits(self.bits())
        return self._kept

    @property
    def sparsity(self) -> float:
        """Share of pruned weights."""
        return 1.0 - self.kept / self.size

    def to_dense(self) -> np.ndarray:
        """The mask as a boolean array of its shape."""
        return unpack_bits(self.bits(), self.size).reshape(self.shape)

    def native_spec(self) -> tuple:
        """How the kernels read this mask: ("bitmap", words) unless a format decodes it itself."""
        return ("bitmap", self.bits())

    @abstractmethod
    def stored_bits(self) -> int:
        """Bits this format stores for the mask (its index cost)."""

    @abstractmethod
    def params(self) -> dict[str, Any]:
        """JSON-serialisable parameters written into the stream header (besides the format id)."""

    @abstractmethod
    def payload(self) -> bytes:
        """The binary section stored in the stream."""

    @abstractmethod
    def _decode_bits(self) -> np.ndarray:
        """Produce the packed keep bits from the stored representation."""

    @classmethod
    @abstractmethod
    def from_stream(
        cls, shape: Shape, params: Params, payload: Payload, words: WordReader = bytes_to_words
    ) -> MaskFormat:
        """Rebuild from a stream, raising StreamError when params or payload do not fit the shape.

        ``words(payload, n_bits)`` turns (a slice of) the payload into packed uint64 words the way the
        stream allows: in place for an aligned stream (:meth:`~sparsecodec.formats.stream.Stream.words`),
        a copy otherwise; it raises ValueError on a wrong length or nonzero padding bits."""


class BitmapMask(MaskFormat):
    """One bit per weight: the simplest index, m*n bits."""

    format_id = "bitmap"

    def __init__(self, shape: tuple[int, int], words: np.ndarray):
        super().__init__(shape)
        self._bits = words

    @classmethod
    def from_dense(cls, mask: np.ndarray) -> BitmapMask:
        mask = np.asarray(mask, dtype=bool)
        return cls(mask.shape, pack_bits(mask))

    def stored_bits(self) -> int:
        return self.size

    def params(self) -> dict[str, Any]:
        return {}

    def payload(self) -> bytes:
        return words_to_bytes(self.bits(), self.size)

    def _decode_bits(self) -> np.ndarray:  # pragma: no cover - bits are always present
        raise AssertionError("bitmap masks always hold their bits")

    @classmethod
    def from_stream(
        cls, shape: Shape, params: Params, payload: Payload, words: WordReader = bytes_to_words
    ) -> BitmapMask:
        if params:
            raise StreamError(f"bitmap mask takes no parameters, got {sorted(params)}")
        try:
            bits = words(payload, shape[0] * shape[1])
        except ValueError as exc:
            raise StreamError(f"bitmap mask section is damaged: {exc}") from None
        return cls(shape, bits)


class NoMask(MaskFormat):
    """Every weight kept: nothing is stored (0 bits); the kernels read an all-ones bitmap."""

    format_id = "none"

    def __init__(self, shape: tuple[int, int]):
        super().__init__(shape)

    def stored_bits(self) -> int:
        return 0

    def params(self) -> dict[str, Any]:
        return {}

    def payload(self) -> bytes:
        return b""

    def _decode_bits(self) -> np.ndarray:
        words = np.full((self.size + 63) // 64, np.uint64(0xFFFFFFFFFFFFFFFF), dtype=np.uint64)
        tail = self.size % 64
        if tail:
            words[-1] = np.uint64((1 << tail) - 1)
        return words

    @classmethod
    def from_stream(cls, shape: Shape, params: Params, payload: Payload, words: WordReader = bytes_to_words) -> NoMask:
        if params:
            raise StreamError(f"mask format 'none' takes no parameters, got {sorted(params)}")
        if payload:
            raise StreamError("mask format 'none' stores nothing, but its section is not empty")
        return cls(shape)


MASK_FORMATS: dict[str, type[MaskFormat]] = {}


def register_mask_format(cls: type[MaskFormat]) -> type[MaskFormat]:
    """Make a mask format readable from streams under its ``format_id``."""
    MASK_FORMATS[cls.format_id] = cls
    return cls


register_mask_format(BitmapMask)
register_mask_format(NoMask)


def mask_from_stream(
    shape: tuple[int, int], spec: Any, payload: bytes | memoryview, words: WordReader = bytes_to_words
) -> MaskFormat:
    """Rebuild the mask described by a stream header entry ``{"format": id, ...params}``
    (``words``: see :meth:`MaskFormat.from_stream`)."""
    if not isinstance(spec, dict) or not isinstance(spec.get("format"), str):
        raise StreamError("stream header 'mask' must be an object with a 'format' name")
    fmt = MASK_FORMATS.get(spec["format"])
    if fmt is None:
        raise StreamError(f"stream uses unknown mask format {spec['format']!r}")
    params = {k: v for k, v in spec.items() if k != "format"}
    if _takes_words(fmt):
        return fmt.from_stream(shape, params, payload, words)
    return fmt.from_stream(shape, params, bytes(payload))  # a format written before readers existed


@functools.cache
def _takes_words(fmt: type[MaskFormat]) -> bool:
    return "words" in inspect.signature(fmt.from_stream).parameters
