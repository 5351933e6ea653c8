"""Packing boolean arrays into the little-endian uint64 words the kernels use.

Bit ``i`` of a packed array lives in word ``i // 64`` at position ``i % 64`` (numpy's
``packbits(..., bitorder="little")`` viewed as little-endian uint64).
"""

from __future__ import annotations

import numpy as np


def words_for(n_bits: int) -> int:
    """Number of uint64 words that hold ``n_bits`` bits."""
    return (n_bits + 63) // 64


def pack_bits(bits: np.ndarray) -> np.ndarray:
    """Pack a boolean array (flattened in C order) into uint64 words."""
    flat = np.ascontiguousarray(bits, dtype=bool).reshape(-1)
    packed = np.packbits(flat, bitorder="little")
    out = np.zeros(words_for(flat.size) * 8, dtype=np.uint8)
    out[: packed.size] = packed
    return out.view("<u8").astype(np.uint64, copy=False)


def pack_rows(bits: np.ndarray) -> np.ndarray:
    """Pack the last axis of a boolean array into uint64 words: shape (..., n) -> (..., ceil(n / 64))."""
    arr = np.asarray(bits, dtype=bool)
    n = arr.shape[-1]
    packed = np.packbits(arr, axis=-1, bitorder="little")
    out = np.zeros(arr.shape[:-1] + (words_for(n) * 8,), dtype=np.uint8)
    out[..., : packed.shape[-1]] = packed
    return np.ascontiguousarray(out).view("<u8").astype(np.uint64, copy=False)


def count_bits(words: np.ndarray) -> int:
    """Number of set bits in packed words."""
    w = np.asarray(words, dtype=np.uint64)
    if hasattr(np, "bitwise_count"):  # numpy >= 2.0
        return int(np.bitwise_count(w).sum())
    return int(np.unpackbits(w.view(np.uint8)).sum())


def unpack_bits(words: np.ndarray, n_bits: int) -> np.ndarray:
    """Inverse of :func:`pack_bits`: the first ``n_bits`` bits as a boolean vector."""
    raw = np.ascontiguousarray(words, dtype="<u8").view(np.uint8)
    return np.unpackbits(raw, bitorder="little", count=n_bits).astype(bool)


def words_to_bytes(words: np.ndarray, n_bits: int) -> bytes:
    """The first ``ceil(n_bits / 8)`` bytes of packed words (what a stream stores)."""
    return np.ascontiguousarray(words, dtype="<u8").view(np.uint8)[: (n_bits + 7) // 8].tobytes()


def bytes_to_words(data: bytes, n_bits: int) -> np.ndarray:
    """Inverse of :func:`words_to_bytes`; the stored length must match ``n_bits`` exactly."""
    if len(data) != (n_bits + 7) // 8:
        raise ValueError(f"expected {(n_bits + 7) // 8} bytes for {n_bits} bits, got {len(data)}")
    out = np.zeros(words_for(n_bits) * 8, dtype=np.uint8)
    out[: len(data)] = np.frombuffer(data, dtype=np.uint8)
    if n_bits % 8 and out[len(data) - 1] >> (n_bits % 8):
        raise ValueError("nonzero padding bits after the last stored bit")
    return out.view("<u8").astype(np.uint64, copy=False)
