"""GPTQ and SparseGPT: one column-by-column solver on the inverse Hessian of a layer's inputs.

For a linear layer ``y = x W^T`` and calibration inputs X (tokens x d_in), the output error of
changed weights W' is ``||X (W - W')^T||^2 = tr((W - W') H (W - W')^T)`` with ``H = X^T X``. Both
methods walk the input columns in order (optionally "act-order": by decreasing ``H_jj``), fix column j
(quantise it onto a grid, prune it, or both) and move its error onto the columns not yet fixed, the
move that keeps the output error smallest (the optimal-brain-surgeon update). With U the upper
Cholesky factor of ``H^{-1}``, the error of column j divided by ``U_jj``, times row j of U, is
subtracted from the later columns. Columns are handled in blocks; the update of the columns after a
block is applied once at the block's end (GPTQ's lazy batches), which changes nothing but the speed.

* GPTQ: a uniform q-bit grid (step, integer zero point per group of ``group_size`` input columns),
  pruned positions of a given keep-mask set to exactly zero, their error compensated like a
  quantisation error. A group's step and zero point are fitted when the first of its columns is
  reached, from the group's weights as they stand then (after the updates so far); with act-order the
  groups stay runs of consecutive columns, so the stored format does not change.
* SparseGPT: at the start of each block the block's mask is chosen, pruning the weights with the
  smallest ``w^2 / U_jj^2`` over the whole block (so rows may differ in sparsity), and exactly
  ``round(sparsity * size)`` weights of the layer are pruned. With a grid it quantises in the same pass
  (the joint sparse + quantised result); without one it only prunes and reconstructs.

Dead inputs (``H_jj = 0``, never active in the calibration data) are given a unit diagonal, so their
weights are quantised as round to nearest rather than dropped: data the calibration set never showed
may still use them. Work is in float64.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..quantizers.uniform import grid_codes, grid_for_range, grid_range
from ..validation import as_fraction, as_int

#: Shrink factors of a group's range tried by the clipping search (the best squared error wins).
CLIP_RATIOS = tuple(round(1.0 - 0.05 * i, 2) for i in range(9))


@dataclass(frozen=True)
class SolverOptions:
    """Knobs of the GPTQ / SparseGPT solver.

    * ``damp``: share of the mean of diag(H) added to the diagonal (numerical safety; 0.01 as in GPTQ);
    * ``block_size``: columns per lazy block, also SparseGPT's mask-selection block;
    * ``act_order``: visit columns by decreasing ``H_jj`` (the most active inputs first);
    * ``clip_search``: fit each group's grid on the shrunken range (``CLIP_RATIOS``) with the least
      squared error, instead of always on the full range.
    """

    damp: float = 0.01
    block_size: int = 128
    act_order: bool = True
    clip_search: bool = True

    def __post_init__(self) -> None:
        if not (isinstance(self.damp, (int, float)) and 0.0 < float(self.damp) <= 10.0):
            raise ValueError(f"damp must be a number in (0, 10], got {self.damp!r}")
        as_int(self.block_size, "block_size", 1, 1 << 20)


@dataclass(frozen=True)
class UniformGrid:
    """The target grid: ``bits`` per weight, one step and zero point per ``group_size`` columns."""

    bits: int
    group_size: int
    scale_dtype: str = "float16"


@dataclass
class Solution:
    """What the solver fixed: the weights as they now are (grid values, exact zeros where pruned), the
    keep-mask, and with a grid the step (R, G), integer zero point (R, G) and codes (R, C)."""

    weights: np.ndarray
    keep: np.ndarray
    step: np.ndarray | None = None
    zero: np.ndarray | None = None
    codes: np.ndarray | None = None


def inverse_hessian_factor(hessian: np.ndarray, damp: float) -> np.ndarray:
    """Upper Cholesky factor U of ``(H + damp * mean(diag H) * I)^{-1}`` (so ``H^{-1} = U^T U``),
    after giving dead inputs a unit diagonal. The damping is raised tenfold (up to three times) if the
    matrix is still not positive definite."""
    h = np.array(hessian, dtype=np.float64)
    diag = np.einsum("ii->i", h)
    diag[diag <= 0] = 1.0
    level = float(damp) * float(np.mean(diag))
    for _ in range(4):
        try:
            lower = np.linalg.cholesky(h + level * np.eye(len(h)))
            inv_lower = np.linalg.inv(lower)
            return np.linalg.cholesky(inv_lower.T @ inv_lower).T
        except np.linalg.LinAlgError:
            level *= 10.0
    raise ValueError("the calibration Hessian is not positive definite even with strong damping")


def obs_saliency(weights: np.ndarray, hessian: np.ndarray, damp: float = 0.01) -> np.ndarray:
    """The optimal-brain-surgeon cost of pruning each weight alone, ``w_ij^2 / [H^{-1}]_jj``: the
    importance SparseGPT ranks by, for a mask chosen up front (the low-rank index search)."""
    u = inverse_hessian_factor(hessian, damp)
    inv_diag = np.einsum("ij,ij->j", u, u)  # diag(U^T U)
    return np.asarray(weights, dtype=np.float64) ** 2 / inv_diag[None, :]


@dataclass(frozen=True)
class PreparedHessian:
    """A layer's Hessian made ready for :func:`solve` under given options: the column order and the
    inverse factor of the reordered matrix. Prepare it once to solve many problems on one Hessian
    (budget mode tries every candidate on each layer)."""

    order: np.ndarray
    position: np.ndarray
    factor: np.ndarray
    damp: float
    act_order: bool


def prepare_hessian(hessian: np.ndarray, options: SolverOptions | None = None) -> PreparedHessian:
    """Column order and inverse Hessian factor for ``options`` (see :func:`solve`)."""
    opts = options or SolverOptions()
    shape = np.shape(hessian)
    if len(shape) != 2 or shape[0] != shape[1]:
        raise ValueError(f"hessian must be a square matrix, got shape {shape}")
    h = check_hessian(hessian, shape[0])
    cols = shape[0]
    order = np.argsort(-np.einsum("ii->i", h), kind="stable") if opts.act_order else np.arange(cols)
    position = np.empty(cols, dtype=np.int64)
    position[order] = np.arange(cols)
    factor = inverse_hessian_factor(h[np.ix_(order, order)], opts.damp)
    return PreparedHessian(order, position, factor, float(opts.damp), bool(opts.act_order))


def check_hessian(hessian: np.ndarray, cols: int) -> np.ndarray:
    """The Hessian as a float64 square (cols, cols) array, or a ValueError naming what is wrong."""
    h = np.asarray(hessian)
    if h.shape != (cols, cols):
        raise ValueError(f"hessian must be ({cols}, {cols}) for a weight with {cols} input columns, got {h.shape}")
    if not np.issubdtype(h.dtype, np.floating) or not np.isfinite(h).all():
        raise ValueError("hessian must be a finite float array")
    return h.astype(np.float64, copy=False)


def solve(
    weights: np.ndarray,
    hessian: np.ndarray | PreparedHessian,
    *,
    keep: np.ndarray | None = None,
    sparsity: float | None = None,
    grid: UniformGrid | None = None,
    options: SolverOptions | None = None,
) -> Solution:
    """Fix every column of ``weights`` (R, C) under the layer's input Hessian (C, C); see the module
    docstring. Give a fixed ``keep`` mask (GPTQ on a pruned layer), or a ``sparsity`` for SparseGPT to
    choose the mask, or neither (nothing pruned). ``hessian`` may be prepared once for many solves
    (:func:`prepare_hessian`, with the same options)."""
    opts = options or SolverOptions()
    w = np.array(weights, dtype=np.float64)
    if w.ndim != 2:
        raise ValueError(f"weights must be 2-D, got shape {w.shape}")
    rows, cols = w.shape
    if isinstance(hessian, PreparedHessian):
        prepared = hessian
        if prepared.factor.shape != (cols, cols):
            n = len(prepared.factor)
            raise ValueError(f"the prepared Hessian is for {n} input columns, the weights have {cols}")
        if (prepared.damp, prepared.act_order) != (float(opts.damp), bool(opts.act_order)):
            raise ValueError("the Hessian was prepared with other damp / act_order options than these")
    else:
        check_hessian(hessian, cols)
        prepared = prepare_hessian(hessian, opts)
    if keep is not None and sparsity is not None:
        raise ValueError("give either a keep mask or a sparsity for the solver to choose one, not both")
    adaptive = sparsity is not None
    target = as_fraction(sparsity, "sparsity") if adaptive else 0.0
    mask = np.ones((rows, cols), dtype=bool) if keep is None else np.array(keep, dtype=bool)
    if mask.shape != w.shape:
        raise ValueError(f"keep mask shape {mask.shape} does not match weights shape {w.shape}")

    order, position, u = prepared.order, prepared.position, prepared.factor
    w, mask = w[:, order], mask[:, order]
    fitter = _GroupFitter(grid, rows, cols, order, position, opts.clip_search) if grid is not None else None

    out = np.zeros_like(w)
    codes = np.zeros((rows, cols), dtype=np.int64) if grid is not None else None
    block = int(opts.block_size)
    for b in range(0, cols, block):
        e = min(b + block, cols)
        w1, u1 = w[:, b:e].copy(), u[b:e, b:e]
        errors = np.zeros_like(w1)
        if adaptive:
            n_prune = int(round(target * rows * e)) - int(round(target * rows * b))
            mask[:, b:e] = _keep_best(w1**2 / np.diag(u1)[None, :] ** 2, n_prune)
        for j in range(e - b):
            p = b + j
            col = w1[:, j]
            if fitter is not None:
                fitter.reach(p, w, w1, b, errors[:, :j], u, mask)
                k, q = fitter.quantise(p, col)
                codes[:, p] = k
            else:
                q = col.copy()
            q[~mask[:, p]] = 0.0
            err = (col - q) / u1[j, j]
            w1[:, j:] -= np.outer(err, u1[j, j:])
            errors[:, j] = err
            out[:, p] = q
        w[:, e:] -= errors @ u[b:e, e:]

    result = Solution(out[:, position], mask[:, position])
    if fitter is not None:
        result.step, result.zero, result.codes = fitter.step, fitter.zero, codes[:, position]
    return result


def _keep_best(score: np.ndarray, n_prune: int) -> np.ndarray:
    """Keep-mask of ``score``'s shape pruning exactly its ``n_prune`` smallest entries (ties broken
    by position, deterministically)."""
    keep = np.ones(score.size, dtype=bool)
    if n_prune >= score.size:
        keep[:] = False
    elif n_prune > 0:
        keep[np.argpartition(score.reshape(-1), n_prune - 1, kind="introselect")[:n_prune]] = False
    return keep.reshape(score.shape)


class _GroupFitter:
    """Per-group steps and zero points, each fitted when the solver first reaches one of the group's
    columns, from the group's weights as they stand at that moment."""

    def __init__(self, grid: UniformGrid, rows: int, cols: int, order, position, clip_search: bool):
        self.grid = grid
        gs = min(int(grid.group_size), cols)
        self.gs = gs
        groups = -(-cols // gs)
        self.group_of_position = order // gs  # original column -> group, indexed by position
        self.positions = [np.sort(position[g * gs : min((g + 1) * gs, cols)]) for g in range(groups)]
        self.fitted = np.zeros(groups, dtype=bool)
        self.step = np.zeros((rows, groups))
        self.zero = np.zeros((rows, groups))
        self.ratios = CLIP_RATIOS if clip_search else (1.0,)

    def reach(self, p: int, w, w1, b: int, pending_errors, u, mask) -> None:
        g = int(self.group_of_position[p])
        if self.fitted[g]:
            return
        pos = self.positions[g]  # all >= p: no column of an unfitted group has been fixed yet
        in_block = pos[pos < b + w1.shape[1]]
        later = pos[pos >= b + w1.shape[1]]
        values = np.empty((w.shape[0], len(pos)))
        values[:, : len(in_block)] = w1[:, in_block - b]
        if len(later):  # the lazy update of this block is still pending for columns after it
            values[:, len(in_block) :] = w[:, later] - pending_errors @ u[b : b + pending_errors.shape[1], later]
        keep = mask[:, np.concatenate([in_block, later])]
        self.step[:, g], self.zero[:, g] = self._fit(values, keep)
        self.fitted[g] = True

    def _fit(self, values: np.ndarray, keep: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        bits, dtype = self.grid.bits, self.grid.scale_dtype
        lo, hi = grid_range(values, keep)
        best_err = np.full(values.shape[0], np.inf)
        best_step, best_zero = np.zeros_like(lo), np.zeros_like(lo)
        for ratio in self.ratios:
            step, zero = grid_for_range(lo * ratio, hi * ratio, bits, dtype)
            q = step[:, None] * (grid_codes(values, step, zero, bits) - zero[:, None])
            err = np.einsum("rk,rk->r", (values - q) * keep, values - q)
            better = err < best_err
            best_err = np.where(better, err, best_err)
            best_step, best_zero = np.where(better, step, best_step), np.where(better, zero, best_zero)
        return best_step, best_zero

    def quantise(self, p: int, col: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        g = int(self.group_of_position[p])
        step, zero = self.step[:, g], self.zero[:, g]
        k = grid_codes(col[:, None], step, zero, self.grid.bits)[:, 0]
        return k, step * (k - zero)
