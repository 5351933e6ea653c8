"""The low-rank binary index: a keep-mask stored as tiled Boolean products of two binary factors.

The matrix is cut into tiles of ``tile = (tile_rows, tile_cols)`` (the last row and column of tiles
may be smaller). Tile (a, b) has factors ``Ia`` (tile rows x rank) and ``Ib`` (rank x tile cols), and
its mask is their Boolean product ``M[i, j] = OR_r Ia[i, r] AND Ib[r, j]``. Storage is
``rank * (tile rows + tile cols)`` bits per tile, ``rank * (col_blocks * rows + row_blocks * cols)``
in all (Lee et al. 2019), whatever the sparsity.

In memory the factors of all tiles are held as two arrays:

* ``left``:  bool (col_blocks, rows, rank); tile (a, b) uses ``left[b, rows of block a]``;
* ``right``: bool (row_blocks, rank, cols); tile (a, b) uses ``right[a, :, cols of block b]``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .. import _native
from ..formats.bitpack import bytes_to_words, pack_bits, pack_rows, unpack_bits, words_to_bytes
from ..formats.stream import StreamError
from .base import MaskFormat, Params, Payload, Shape, WordReader, register_mask_format

MAX_RANK = 64


def tile_grid(shape: tuple[int, int], tile: tuple[int, int]) -> tuple[int, int]:
    """(row blocks, column blocks) of a matrix cut into tiles."""
    return -(-shape[0] // tile[0]), -(-shape[1] // tile[1])


def normalize_tile(shape: tuple[int, int], tile: Any) -> tuple[int, int]:
    """A (tile_rows, tile_cols) pair clipped to the matrix; None means one tile for the whole matrix."""
    if tile is None:
        return int(shape[0]), int(shape[1])
    if isinstance(tile, (int, np.integer)) and not isinstance(tile, bool):
        tile = (tile, tile)
    try:
        th, tw = (int(v) for v in tile)
    except (TypeError, ValueError):
        raise TypeError(f"tile must be None, an int or a (rows, cols) pair, got {tile!r}") from None
    if th < 1 or tw < 1:
        raise ValueError(f"tile sizes must be positive, got {(th, tw)}")
    return min(th, int(shape[0])), min(tw, int(shape[1]))


@register_mask_format
class LowRankMask(MaskFormat):
    """A keep-mask stored as per-tile binary factors (see the module docstring)."""

    format_id = "lowrank"

    def __init__(self, shape: tuple[int, int], tile: tuple[int, int], left: np.ndarray, right: np.ndarray):
        super().__init__(shape)
        self.tile = normalize_tile(self.shape, tile)
        row_blocks, col_blocks = tile_grid(self.shape, self.tile)
        left = np.ascontiguousarray(left, dtype=bool)
        right = np.ascontiguousarray(right, dtype=bool)
        if left.ndim != 3 or right.ndim != 3:
            raise ValueError("left and right factors must be 3-D boolean arrays")
        rank = left.shape[2]
        if not 1 <= rank <= MAX_RANK:
            raise ValueError(f"rank must be between 1 and {MAX_RANK}, got {rank}")
        if left.shape != (col_blocks, self.shape[0], rank):
            raise ValueError(f"left factor must have shape {(col_blocks, self.shape[0], rank)}, got {left.shape}")
        if right.shape != (row_blocks, rank, self.shape[1]):
            raise ValueError(f"right factor must have shape {(row_blocks, rank, self.shape[1])}, got {right.shape}")
        self.rank = rank
        self.left = left
        self.right = right
        self._packed: tuple[np.ndarray, np.ndarray] | None = None

    def _factor_nbytes(self) -> int:
        packed = 0 if self._packed is None else sum(a.nbytes for a in self._packed)
        return self.left.nbytes + self.right.nbytes + packed

    @property
    def grid(self) -> tuple[int, int]:
        return tile_grid(self.shape, self.tile)

    def tile_factors(self, a: int, b: int) -> tuple[np.ndarray, np.ndarray]:
        """(Ia, Ib) of tile (a, b): its mask is ``(Ia.astype(int) @ Ib.astype(int)) > 0``."""
        th, tw = self.tile
        rows = slice(a * th, min(self.shape[0], (a + 1) * th))
        cols = slice(b * tw, min(self.shape[1], (b + 1) * tw))
        return self.left[b, rows], self.right[a, :, cols]

    def stored_bits(self) -> int:
        row_blocks, col_blocks = self.grid
        return self.rank * (col_blocks * self.shape[0] + row_blocks * self.shape[1])

    def params(self) -> dict[str, Any]:
        return {"rank": self.rank, "tile": list(self.tile)}

    def payload(self) -> bytes:
        bits = np.concatenate([self.left.reshape(-1), self.right.reshape(-1)])
        return words_to_bytes(pack_bits(bits), bits.size)

    def packed_factors(self) -> tuple[np.ndarray, np.ndarray]:
        """The factors as the kernels take them: left as rank-bit words (col_blocks, rows) and right
        as packed rows (row_blocks, rank, ceil(cols / 64)); computed once."""
        if self._packed is None:
            weights = np.uint64(1) << np.arange(self.rank, dtype=np.uint64)
            left_words = (self.left.astype(np.uint64) * weights).sum(axis=2, dtype=np.uint64)
            self._packed = (np.ascontiguousarray(left_words), pack_rows(self.right))
        return self._packed

    def native_spec(self) -> tuple:
        left, right = self.packed_factors()
        return ("lowrank", left, right, self.tile[0], self.tile[1], self.rank)

    def _decode_bits(self) -> np.ndarray:
        left, right = self.packed_factors()
        return _native.core().lowrank_decode(
            left, right, self.shape[0], self.shape[1], self.tile[0], self.tile[1], self.rank
        )

    @classmethod
    def from_stream(
        cls, shape: Shape, params: Params, payload: Payload, words: WordReader = bytes_to_words
    ) -> LowRankMask:
        if set(params) != {"rank", "tile"}:
            raise StreamError(f"low-rank mask parameters must be rank and tile, got {sorted(params)}")
        rank, tile = params["rank"], params["tile"]
        if isinstance(rank, bool) or not isinstance(rank, int) or not 1 <= rank <= MAX_RANK:
            raise StreamError("low-rank mask rank is invalid")
        if (
            not isinstance(tile, list)
            or len(tile) != 2
            or any(
                isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= s
                for v, s in zip(tile, shape, strict=True)
            )
        ):
            raise StreamError("low-rank mask tile is invalid")
        row_blocks, col_blocks = tile_grid(shape, (tile[0], tile[1]))
        n_left = col_blocks * shape[0] * rank
        n_right = row_blocks * rank * shape[1]
        try:
            bits = unpack_bits(words(payload, n_left + n_right), n_left + n_right)
        except ValueError as exc:
            raise StreamError(f"low-rank mask section is damaged: {exc}") from None
        left = bits[:n_left].reshape(col_blocks, shape[0], rank)
        right = bits[n_left:].reshape(row_blocks, rank, shape[1])
        return cls(shape, (tile[0], tile[1]), left, right)
