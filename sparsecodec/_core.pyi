"""Type stubs for the compiled kernels (csrc/bindings.cpp and csrc/bind_*.cpp). Internal: use the package API.

Bit arrays are little-endian uint64 words (bit i in word i // 64 at position i % 64). Array arguments
must be C-contiguous numpy arrays of exactly the dtype given (no casts: TypeError otherwise); bad
shapes or values raise ValueError.
"""

from typing import Any, Literal

import numpy as np
import numpy.typing as npt

U32 = npt.NDArray[np.uint32]
U64 = npt.NDArray[np.uint64]
I64 = npt.NDArray[np.int64]
F32 = npt.NDArray[np.float32]
C64 = npt.NDArray[np.complex64]

Layout = Literal["linear", "scatter"]
# How the kernels read a keep-mask: its flat bits, or the factors of a tiled low-rank index
# ("lowrank", left (col blocks, rows), right (row blocks, rank, row words), tile_rows, tile_cols, rank).
MaskSpec = tuple[Literal["bitmap"], U64] | tuple[Literal["lowrank"], U64, U64, int, int, int]

# --- build and run time (bind_runtime.cpp) ---------------------------------------------------------
def build_info() -> dict[str, Any]: ...
def simd_level() -> Literal["scalar", "avx2", "avx512"]: ...
def set_simd_level(level: Literal["scalar", "avx2", "avx512"]) -> Literal["scalar", "avx2", "avx512"]: ...
def num_threads() -> int: ...
def set_num_threads(n: int) -> None: ...

# --- codec building blocks (bind_codec.cpp) ---------------------------------------------------------
def check_network(n_in: int, n_out: int, depth: int) -> None: ...
def xor_network_rows(n_in: int, n_out: int, depth: int, seed: int) -> U64: ...
def encode_planes(
    targets: U64,
    care: U64,
    length: int,
    n_in: int,
    n_out: int,
    depth: int,
    seed: int,
    chain: int,
    layout: Layout = "linear",
    group_bands: int = 1,
) -> tuple[U64, list[I64]]: ...
def decode_planes(
    code: U64,
    patches: list[U32 | I64],
    length: int,
    n_in: int,
    n_out: int,
    depth: int,
    seed: int,
    chain: int,
    layout: Layout = "linear",
    group_bands: int = 1,
) -> U64: ...
def care_rank(mask: U64, length: int, positions: I64) -> I64: ...
def care_select(mask: U64, length: int, indices: I64) -> I64: ...
def rice_bits(values: U64, k: int) -> int: ...
def rice_encode(values: U64, k: int) -> bytes: ...
def rice_decode(data: bytes, n: int, k: int, max_value: int) -> U64: ...
def layout_positions(
    length: int, n_in: int, n_out: int, depth: int, seed: int, chain: int, layout: Layout, group_bands: int
) -> I64: ...
def trellis_transition(key: U32, u: U64, v: U64, k: int, method: Literal["scalar", "hypercube", "avx2"]) -> U32: ...

# --- encoded weights (bind_weight.cpp) --------------------------------------------------------------
class Weight:
    """An encoded weight as the kernels take it: arrays and parameters checked once, then kept."""

    def __init__(
        self,
        *,
        code: U64,
        patches: list[U32 | I64],
        mask: MaskSpec,
        rows: int,
        cols: int,
        scales: F32,
        offsets: F32 | None,
        group_size: int,
        n_in: int,
        n_out: int,
        depth: int,
        seed: int,
        chain: int,
        layout: Layout,
        group_bands: int,
    ) -> None: ...
    @property
    def shape(self) -> tuple[int, int]: ...
    @property
    def bits(self) -> int: ...
    @property
    def has_offsets(self) -> bool: ...
    @property
    def network_nbytes(self) -> int: ...

class DecodedBits:
    """A weight's decoded sign planes for the lut kernel, q bits per weight (and its keep-mask, one
    bit more, unless the weight's is a bitmap, read where it is)."""

    def __init__(self, weight: Weight) -> None: ...
    @property
    def nbytes(self) -> int: ...

class SparsePlan:
    """A weight's sparse form for the sparse kernel: per kept weight its column and bit pattern."""

    def __init__(self, weight: Weight) -> None: ...
    @property
    def kept(self) -> int: ...
    @property
    def nbytes(self) -> int: ...

def decoded_bits_nbytes(weight: Weight) -> int: ...
def sparse_plan_nbytes(weight: Weight, kept: int) -> int: ...
def decode_dense(weight: Weight, mask: U64, out: F32 | None = None) -> F32: ...
def decode_rows(weight: Weight, r0: int, r1: int, out: F32) -> None: ...
def decode_row_set(weight: Weight, rows: I64, out: F32) -> None: ...
def dequantize(
    planes: U64,
    mask: U64,
    rows: int,
    cols: int,
    scales: F32,
    group_size: int,
    nontemporal: bool = False,
    offsets: F32 | None = None,
) -> F32: ...
def matmul(
    x: F32,
    weight: Weight,
    strategy: Literal["lut", "sparse", "lut_int8"],
    plan: SparsePlan | DecodedBits | LutInt8Weight | None,
) -> F32: ...

class LutInt8Weight:
    """A weight's decoded bits in the int8-table kernel's order, with its scales."""

    def __init__(self, weight: Weight) -> None: ...
    @property
    def nbytes(self) -> int: ...

class Int8TileValues:
    """A weight's int8 values for the int8-tile kernel, per row and scale group."""

    def __init__(self, lut_weight: LutInt8Weight) -> None: ...
    @property
    def nbytes(self) -> int: ...

def matmul_int8_tiles(x: F32, lut_weight: LutInt8Weight, values: Int8TileValues) -> F32: ...
def lut_int8_lanes(q: int) -> int: ...

# --- low-rank masks (bind_lowrank.cpp) --------------------------------------------------------------
def lowrank_decode(left: U64, right: U64, rows: int, cols: int, tile_rows: int, tile_cols: int, rank: int) -> U64: ...

# --- band-limited convolution (bind_spectral.cpp) ---------------------------------------------------
def spectral_product(a: C64, b: C64, conj_b: bool, out: C64) -> None: ...
