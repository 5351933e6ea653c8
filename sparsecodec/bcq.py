"""Binary-coding quantisation (BCQ) of the kept weights of a matrix.

Each scale group (a row, or ``group_size`` consecutive columns of a row) is approximated as
``w ~ sum_i alpha_i * b_i`` with ``b_i`` in {-1, +1} and ``alpha_1 >= alpha_2 >= ... >= 0``. Only kept
weights (mask True) enter the fit; the bits of pruned positions are don't-care.

Methods:

* ``"greedy"``: residual binarisation, ``b_i = sign(r)`` (ties give +1), ``alpha_i = mean |r|``.
* ``"alternating"``: start from greedy, then alternate least-squares scales given the codes and
  optimal codes given the scales (nearest of the ``2**bits`` values by binary search), keeping the
  best iterate, so it is never worse than greedy.

The dequantised value is defined exactly (and the C++ decoder reproduces it bit for bit)::

    acc = +alpha_0 if b_0 else -alpha_0          # float32
    acc = acc + (+alpha_i if b_i else -alpha_i)   # for i = 1 .. bits-1, in float32
    w_hat = acc where kept else +0.0
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

BCQ_METHODS = ("greedy", "alternating")
SCALE_DTYPES = {"float32": np.float32, "float16": np.float16}
MAX_BITS = 8

# Rows are processed in blocks so that the (bits, rows, groups, group_size) work arrays stay small.
_BLOCK_ELEMENTS = 1 << 21


@dataclass(frozen=True)
class BCQResult:
    """Scales and sign planes of a quantised matrix.

    ``scales`` is float32 of shape (rows, groups, bits) holding values exactly representable in the
    chosen scale dtype; ``planes`` is bool of shape (bits, rows, cols), True meaning +1.
    """

    scales: np.ndarray
    planes: np.ndarray
    group_size: int

    @property
    def bits(self) -> int:
        return int(self.planes.shape[0])


def groups_for(cols: int, group_size: int) -> int:
    return -(-cols // group_size)


def bcq_quantize(
    weights: np.ndarray,
    mask: np.ndarray,
    bits: int,
    *,
    group_size: int | None = None,
    method: str = "greedy",
    iterations: int = 8,
    scale_dtype: str = "float32",
) -> BCQResult:
    """Quantise the kept entries of a 2-D float array with ``bits`` binary planes.

    ``group_size=None`` (or any value >= cols) gives one set of scales per row.
    """
    w = np.asarray(weights)
    keep = np.asarray(mask, dtype=bool)
    if w.ndim != 2 or keep.shape != w.shape:
        raise ValueError(f"weights and mask must be 2-D arrays of one shape, got {w.shape} and {keep.shape}")
    if method not in BCQ_METHODS:
        raise ValueError(f"method must be one of {BCQ_METHODS}, got {method!r}")
    if scale_dtype not in SCALE_DTYPES:
        raise ValueError(f"scale_dtype must be one of {tuple(SCALE_DTYPES)}, got {scale_dtype!r}")
    rows, cols = w.shape
    gs = cols if group_size is None else min(int(group_size), cols)
    groups = groups_for(cols, gs)
    round_scale = _scale_rounder(SCALE_DTYPES[scale_dtype])

    scales = np.zeros((rows, groups, bits), dtype=np.float32)
    planes = np.zeros((bits, rows, cols), dtype=bool)
    block = max(1, _BLOCK_ELEMENTS // max(1, groups * gs * bits))
    for r0 in range(0, rows, block):
        r1 = min(rows, r0 + block)
        wg = _grouped(w[r0:r1].astype(np.float64), gs, 0.0)
        kg = _grouped(keep[r0:r1], gs, False)
        alphas, signs = _greedy(wg, kg, bits, round_scale)
        if method == "alternating" and bits > 1:
            alphas, signs = _alternate(wg, kg, alphas, signs, iterations, round_scale)
        scales[r0:r1] = alphas.astype(np.float32)
        planes[:, r0:r1] = signs.reshape(bits, r1 - r0, groups * gs)[:, :, :cols]
    return BCQResult(scales=scales, planes=planes, group_size=gs)


def bcq_dequantize(scales: np.ndarray, planes: np.ndarray, mask: np.ndarray, group_size: int) -> np.ndarray:
    """The exact float32 reconstruction defined in the module docstring."""
    bits, rows, cols = planes.shape
    per_col = np.repeat(np.asarray(scales, dtype=np.float32), group_size, axis=1)[:, :cols, :]  # (rows, cols, bits)
    acc = np.where(planes[0], per_col[..., 0], -per_col[..., 0])
    for i in range(1, bits):
        acc = acc + np.where(planes[i], per_col[..., i], -per_col[..., i])
    return np.where(mask, acc, np.float32(0.0)).astype(np.float32, copy=False)


def quantization_error(weights: np.ndarray, approx: np.ndarray, mask: np.ndarray) -> dict[str, float]:
    """RMSE and relative L2 error of ``approx`` against ``weights`` over the kept entries."""
    keep = np.asarray(mask, dtype=bool)
    n = int(keep.sum())
    if n == 0:
        return {"rmse": 0.0, "relative": 0.0}
    diff = (np.asarray(weights, dtype=np.float64) - approx)[keep]
    ref = np.asarray(weights, dtype=np.float64)[keep]
    sq = float(np.dot(diff, diff))
    norm = float(np.dot(ref, ref))
    return {"rmse": float(np.sqrt(sq / n)), "relative": float(np.sqrt(sq / norm)) if norm > 0 else 0.0}


def _scale_rounder(dtype: type):
    def round_scale(a: np.ndarray) -> np.ndarray:
        return np.asarray(a, dtype=np.float64).astype(dtype).astype(np.float64)

    return round_scale


def _grouped(x: np.ndarray, group_size: int, fill) -> np.ndarray:
    """(R, cols) -> (R, groups, group_size), padding the last group with ``fill``."""
    rows, cols = x.shape
    groups = groups_for(cols, group_size)
    pad = groups * group_size - cols
    if pad:
        x = np.concatenate([x, np.full((rows, pad), fill, dtype=x.dtype)], axis=1)
    return x.reshape(rows, groups, group_size)


def _greedy(w: np.ndarray, keep: np.ndarray, bits: int, round_scale) -> tuple[np.ndarray, np.ndarray]:
    residual = np.where(keep, w, 0.0)
    count = np.maximum(keep.sum(axis=-1), 1)
    alphas = np.zeros(w.shape[:2] + (bits,))
    signs = np.empty((bits,) + w.shape, dtype=bool)
    for i in range(bits):
        s = residual >= 0
        a = round_scale(np.abs(residual).sum(axis=-1) / count)
        alphas[..., i] = a
        signs[i] = s
        residual = residual - np.where(s, a[..., None], -a[..., None]) * keep
    return alphas, signs


def _reconstruct(alphas: np.ndarray, signs: np.ndarray) -> np.ndarray:
    total = np.zeros(signs.shape[1:])
    for i in range(signs.shape[0]):
        total += np.where(signs[i], alphas[..., i, None], -alphas[..., i, None])
    return total


def _squared_error(w, keep, alphas, signs) -> float:
    d = ((w - _reconstruct(alphas, signs)) * keep).reshape(-1)
    return float(np.dot(d, d))


def _alternate(w, keep, alphas, signs, iterations: int, round_scale):
    bits = signs.shape[0]
    best = (_squared_error(w, keep, alphas, signs), alphas, signs)
    combos = _sign_combinations(bits)  # (2**bits, bits) of +-1
    wk = w * keep
    for _ in range(iterations):
        s = np.where(signs, 1.0, -1.0) * keep
        gram = np.einsum("irgk,jrgk->rgij", s, s)
        rhs = np.einsum("irgk,rgk->rgi", s, wk)
        alphas = (np.linalg.pinv(gram) @ rhs[..., None])[..., 0]
        alphas = round_scale(-np.sort(-np.abs(alphas), axis=-1))
        signs = _nearest_codes(w, alphas, combos)
        err = _squared_error(w, keep, alphas, signs)
        if err < best[0]:
            best = (err, alphas, signs)
    return best[1], best[2]


def _sign_combinations(bits: int) -> np.ndarray:
    idx = np.arange(1 << bits)
    return np.where((idx[:, None] >> np.arange(bits)) & 1, 1.0, -1.0)


def _nearest_codes(w: np.ndarray, alphas: np.ndarray, combos: np.ndarray) -> np.ndarray:
    """Optimal sign planes for fixed scales: binary search over the sorted 2**bits values."""
    bits = combos.shape[1]
    values = alphas @ combos.T  # (R, G, C)
    order = np.argsort(values, axis=-1, kind="stable")
    sorted_values = np.take_along_axis(values, order, axis=-1)
    mids = 0.5 * (sorted_values[..., 1:] + sorted_values[..., :-1])  # (R, G, C-1)
    idx = np.zeros(w.shape, dtype=np.int64)
    c = combos.shape[0]
    for level in range(bits):
        half = c >> (level + 1)
        probe = np.take_along_axis(mids, idx + half - 1, axis=-1)
        idx += half * (w > probe)
    chosen = np.take_along_axis(order, idx, axis=-1)  # combination index per weight
    return ((chosen[None] >> np.arange(bits)[:, None, None, None]) & 1).astype(bool)
