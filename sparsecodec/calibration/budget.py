"""Budget mode: choose, per layer, the sparsity, bits and group size that keep the model closest to
the original under a total bits-per-weight budget.

1. **Sensitivity.** For every layer and every candidate, the layer is compressed alone (GPTQ /
   SparseGPT on the Hessian of its dense inputs; round to nearest and magnitude pruning for an
   embedding) and its *local* relative output error is computed:
   ``tr(D H D^T) / tr(W H W^T)`` with ``D = W - W_hat`` (an embedding: the squared error of its rows,
   each weighted by how often the calibration text uses it, plus one).
2. **Gain.** Local errors of different layers are not worth the same at the model's output. Each
   layer is compressed once with a reference candidate, and the relative error of the *model's*
   output over the first calibration batches is measured, with every other layer dense. The layer's gain is
   that end-to-end error over its local error; the predicted cost of a candidate is gain x local
   error.
3. **Choice.** Minimise the sum of predicted costs subject to the budget: a multiple-choice knapsack,
   solved exactly by dynamic programming over the layers' bits (discretised to 1/4000 of the budget).

The same measurement allocates a sparsity over the model (``compress_(..., sparsity_scope="model")``):
the candidates are the config's bits and group size at sparsities around its own
(:func:`sparsity_candidates`), the knapsack's resource is the kept weights instead of bits, and the
largest layer's sparsity is then nudged so that the model's sparsity is the target exactly
(:meth:`Sensitivity.plan_sparsity`).

The bits of a candidate are estimated from the format (XOR-coded planes with patches at the rate
measured for the sparsity, bitmap mask, step and zero point per group); the compression that follows
reports the exact figures.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from ..config import SQConfig
from ..formats.xor_codec import DEFAULT_DEPTH, encode
from ..masks.pruning import input_norms_from_hessian, magnitude_mask, wanda_mask
from ..quantizers import VALUE_MODELS, groups_for
from ..quantizers.reference import rtn_asymmetric
from ..validation import as_fraction, as_int
from .second_order import PreparedHessian, SolverOptions, UniformGrid, prepare_hessian, solve
from .sequential import SequentialCalibration, run_model, token_counts, token_mask

#: (sparsity, bits, group size) candidates tried per layer by default; group size None is one step
#: and zero point per row.
DEFAULT_CANDIDATES: tuple[tuple[float, int, int | None], ...] = (
    (0.0, 8, None),
    (0.0, 8, 128),
    (0.0, 6, 128),
    (0.0, 4, 64),
    (0.0, 4, 128),
    (0.0, 3, 64),
    (0.0, 3, 128),
    (0.0, 2, 64),
    (0.5, 4, 128),
    (0.5, 3, 128),
    (0.5, 2, 128),
    (0.7, 3, 128),
    (0.7, 2, 128),
)
#: The candidate each layer's gain is measured with, when it is among the candidates (else the one
#: of median bits x density).
GAIN_CANDIDATE = (0.0, 3, 128)
#: Calibration batches the gains are measured on (each is a full forward pass per layer; the ratio
#: they give settles well before the whole calibration set).
GAIN_BATCHES = 8
#: Resolution of the knapsack: the budget is cut into this many units.
KNAPSACK_UNITS = 4000
#: Per-model sparsity: the layers' sparsities are chosen among the target plus these steps (clipped
#: to [0, MAX_LAYER_SPARSITY]). On all-MiniLM-L6-v2 at 50 % the choice spans 0.2 (the feed-forward
#: input layers) to 0.7 (the word embeddings).
SPARSITY_STEPS = (-0.3, -0.2, -0.1, 0.0, 0.1, 0.2, 0.3)
MAX_LAYER_SPARSITY = 0.95


@dataclass(frozen=True)
class LayerChoice:
    """What budget mode chose for one layer, and what it predicted."""

    name: str
    weights: int
    sparsity: float
    bits: int
    group_size: int | None
    estimated_bpw: float
    local_error: float
    predicted_error: float


@dataclass
class BudgetPlan:
    """The per-layer configs budget mode (or a per-model sparsity) chose, with the figures it chose
    them by. ``target_bpw`` is None when the plan allocates ``target_sparsity`` instead."""

    target_bpw: float | None
    choices: list[LayerChoice]
    configs: dict[str, SQConfig]
    target_sparsity: float | None = None

    @property
    def estimated_bpw(self) -> float:
        n = sum(c.weights for c in self.choices)
        return sum(c.estimated_bpw * c.weights for c in self.choices) / n

    @property
    def sparsity(self) -> float:
        """The share of the layers' weights pruned, over all of them."""
        n = sum(c.weights for c in self.choices)
        return sum(c.sparsity * c.weights for c in self.choices) / n

    def __str__(self) -> str:
        if self.target_bpw is not None:
            head = f"budget {self.target_bpw:.3f} bits/weight, estimated {self.estimated_bpw:.3f}:"
        else:
            head = (
                f"sparsity {self.target_sparsity:g} over the model ({self.sparsity:.4f} allocated), "
                f"estimated {self.estimated_bpw:.3f} bits/weight:"
            )
        lines = [head]
        for c in self.choices:
            lines.append(
                f"  {c.name}: S={c.sparsity:.4g} q={c.bits} g={c.group_size or 'row'} "
                f"~{c.estimated_bpw:.3f} bpw, predicted error {c.predicted_error:.2e}"
            )
        return "\n".join(lines)


def candidate_config(base: SQConfig, candidate: tuple[float, int, int | None]) -> SQConfig:
    """``base`` with a candidate's sparsity, bits and group size."""
    sparsity, bits, group = candidate
    return dataclasses.replace(
        base, sparsity=float(sparsity), bits=int(bits), group_size=None if group is None else int(group)
    )


def sparsity_candidates(config: SQConfig) -> list[tuple[float, int, int | None]]:
    """The candidates of a per-model sparsity: ``config``'s bits and group size at its sparsity plus
    :data:`SPARSITY_STEPS`."""
    levels = sorted({round(min(max(config.sparsity + d, 0.0), MAX_LAYER_SPARSITY), 4) for d in SPARSITY_STEPS})
    return [(s, config.bits, config.group_size) for s in levels]


def estimated_bits_per_weight(config: SQConfig, shape: tuple[int, int]) -> float:
    """Bits per weight a matrix of ``shape`` will cost with ``config``: the XOR-coded planes with
    their patches at the format's measured rate for this sparsity (:func:`coded_bits_per_plane`), a
    bitmap mask when anything is pruned, and the value model's parameters."""
    rows, cols = shape
    depth = config.depth or (DEFAULT_DEPTH if config.sparsity > 0 else 1)
    values = config.bits * coded_bits_per_plane(config.sparsity, depth)
    mask = 1.0 if config.sparsity > 0 else 0.0
    gs = min(config.group_size or cols, cols)
    value_model = {"greedy": "bcq", "alternating": "bcq-offset"}.get(config.method, "uniform")
    params = VALUE_MODELS[value_model].stored_bits(rows, groups_for(cols, gs), config.bits, config.scale_dtype)
    return values + mask + params / (rows * cols)


@functools.cache
def coded_bits_per_plane(sparsity: float, depth: int) -> float:
    """Stored bits per weight of one XOR-coded bit-plane (code words and patches) at this sparsity,
    measured once per process on a 128 x 2048 random matrix pruned by magnitude (the encoder's
    default slice lengths)."""
    if sparsity == 0.0 and depth == 1:
        return 1.0  # square invertible networks: one stored bit per weight, no patches
    w = np.random.default_rng(0).standard_normal((128, 2048)).astype(np.float32)
    enc = encode(w, sparsity=sparsity, bits=1, method="uniform", depth=depth)
    return float(enc.stats["values_bpw"] + enc.stats["patch_bpw"])


def choose(options: Sequence[Sequence[tuple[float, float]]], budget_bits: float) -> list[int]:
    """Multiple-choice knapsack: per item one option (bits, cost), the total bits within
    ``budget_bits``, the total cost least. Returns the chosen option of each item; raises ValueError
    if even the cheapest options exceed the budget."""
    if budget_bits <= 0:
        raise ValueError("the budget must be positive")
    unit = budget_bits / KNAPSACK_UNITS
    cap = KNAPSACK_UNITS
    best = np.full(cap + 1, np.inf)
    best[0] = 0.0
    picks: list[np.ndarray] = []
    for item in options:
        new = np.full(cap + 1, np.inf)
        pick = np.full(cap + 1, -1, dtype=np.int64)
        for k, (bits, cost) in enumerate(item):
            w = int(np.ceil(bits / unit - 1e-9))
            if w > cap:
                continue
            shifted = np.full(cap + 1, np.inf)
            shifted[w:] = best[: cap + 1 - w] + cost
            better = shifted < new
            new[better], pick[better] = shifted[better], k
        best = new
        picks.append(pick)
    if not np.isfinite(best).any():
        cheapest = sum(min(b for b, _ in item) for item in options)
        raise ValueError(
            f"the budget cannot be met: the cheapest candidates need {cheapest / budget_bits:.2f}x the bits allowed"
        )
    used = int(np.argmin(best))
    chosen: list[int] = []
    for item, pick in zip(reversed(list(options)), reversed(picks), strict=True):
        k = int(pick[used])
        chosen.append(k)
        used -= int(np.ceil(item[k][0] / unit - 1e-9))
    return chosen[::-1]


def _output_tensor(out: Any) -> torch.Tensor:
    """The first tensor of a model's output (a tensor, a tuple, or a transformers ModelOutput)."""
    if isinstance(out, torch.Tensor):
        return out
    if isinstance(out, Mapping):
        out = list(out.values())
    if isinstance(out, (tuple, list)) and out and isinstance(out[0], torch.Tensor):
        return out[0]
    raise TypeError(f"cannot find the output tensor of the model in a {type(out).__name__}")


def _model_output(model: nn.Module, batch: Any) -> torch.Tensor:
    """The model's output tensor on ``batch`` (float64), without its padding positions."""
    y = _output_tensor(run_model(model, batch)).double()
    mask = token_mask(batch)
    if mask is not None and y.dim() >= 3 and tuple(y.shape[:2]) == tuple(mask.shape):
        return y[mask.to(torch.bool)]
    return y


def _hessian_energy(d: np.ndarray, h: np.ndarray) -> float:
    """``tr(D H D^T)``: the output energy of weights D on inputs with Hessian H (one BLAS product; a
    three-operand einsum does it without BLAS and is a hundred times slower)."""
    return float(np.einsum("ij,ij->", d @ h, d))


class _Sensitivity:
    """Local errors of every candidate per layer, and the matrices of the gain candidate."""

    def __init__(self, candidates, base: SQConfig):
        self.candidates = list(candidates)
        self.base = base
        by_size = sorted(self.candidates, key=lambda c: c[1] * (1.0 - c[0]))
        self.gain_candidate = GAIN_CANDIDATE if GAIN_CANDIDATE in self.candidates else by_size[len(by_size) // 2]
        self.local: dict[str, list[float]] = {}
        self.gain_weights: dict[str, list[np.ndarray]] = {}

    def calibrated(self, name: str, matrices: list[np.ndarray], hessians: list[np.ndarray]) -> None:
        errors = np.zeros(len(self.candidates))
        gain_mats = []
        for w, h in zip(matrices, hessians, strict=True):
            w64 = w.astype(np.float64)
            energy = max(_hessian_energy(w64, h), 1e-30)
            prepared: dict[SolverOptions, PreparedHessian] = {}  # one factor per damping, not per candidate
            for k, cand in enumerate(self.candidates):
                cfg = candidate_config(self.base, cand)
                options = cfg.solver_options()
                if options not in prepared:
                    prepared[options] = prepare_hessian(h, options)
                keep, adaptive = None, None
                if cfg.sparsity > 0 and cfg.pruning == "sparsegpt":
                    adaptive = cfg.sparsity
                elif cfg.sparsity > 0 and cfg.pruning == "wanda":
                    keep = wanda_mask(w64, input_norms_from_hessian(h), cfg.sparsity)
                elif cfg.sparsity > 0:
                    keep = magnitude_mask(w64, cfg.sparsity)
                grid = UniformGrid(cfg.bits, min(cfg.group_size or w.shape[1], w.shape[1]), cfg.scale_dtype)
                sol = solve(w64, prepared[options], keep=keep, sparsity=adaptive, grid=grid, options=options)
                errors[k] += _hessian_energy(w64 - sol.weights, h) / energy / len(matrices)
                if cand == self.gain_candidate:
                    gain_mats.append(sol.weights.astype(np.float32))
        self.local[name] = errors.tolist()
        self.gain_weights[name] = gain_mats

    def data_free(self, name: str, matrices: list[np.ndarray], row_weights: np.ndarray | None) -> None:
        errors = np.zeros(len(self.candidates))
        gain_mats = []
        for w in matrices:
            w64 = w.astype(np.float64)
            rw = np.ones(w.shape[0]) if row_weights is None else row_weights
            energy = max(float(rw @ np.einsum("rc,rc->r", w64, w64)), 1e-30)
            for k, (sparsity, bits, group) in enumerate(self.candidates):
                # Plain magnitude, although compress_ then prunes an embedding by frequency-weighted
                # magnitude: that mask suits the calibration text's tokens best, and judged on the
                # same counts it looks nearly free, so the knapsack would prune the table far more
                # than other text can bear (at 70 % on all-MiniLM-L6-v2: cosine 0.48 against 0.71).
                # The plain mask's error is the estimate that holds whatever tokens a text uses.
                keep = magnitude_mask(w64, sparsity)
                gs = min(group or w.shape[1], w.shape[1])
                w_hat = rtn_asymmetric(np.where(keep, w64, 0.0), bits, gs, self.base.scale_dtype)
                w_hat = np.where(keep, w_hat, 0.0)
                d = w64 - w_hat
                errors[k] += float(rw @ np.einsum("rc,rc->r", d, d)) / energy / len(matrices)
                if (sparsity, bits, group) == self.gain_candidate:
                    gain_mats.append(w_hat.astype(np.float32))
        self.local[name] = errors.tolist()
        self.gain_weights[name] = gain_mats


@dataclass
class Sensitivity:
    """Measured sensitivities of every layer to every candidate, from which plans for any budget
    are chosen without measuring again (:meth:`plan`)."""

    base: SQConfig
    candidates: list[tuple[float, int, int | None]]
    names: list[str]
    sizes: dict[str, int]
    #: per layer and candidate: (estimated bits of the layer, local error, predicted cost)
    options: dict[str, list[tuple[float, float, float]]]

    def plan(self, target_bpw: float) -> BudgetPlan:
        """The configs that minimise the predicted cost within ``target_bpw`` bits per weight."""
        target = _as_target(target_bpw)
        total = sum(self.sizes.values())
        picked = choose([[(b, c) for b, _, c in self.options[n]] for n in self.names], target * total)
        return BudgetPlan(target, *self._chosen(picked))

    def plan_sparsity(self, target_sparsity: float) -> BudgetPlan:
        """Per-layer sparsities, from this measurement's candidates, that minimise the predicted cost
        with ``target_sparsity`` of all the layers' weights pruned: a knapsack on kept weights, then
        the largest layer's sparsity moved so that the total is the target exactly."""
        target = as_fraction(target_sparsity, "sparsity")
        total = sum(self.sizes.values())
        if target >= 1.0:
            raise ValueError("a sparsity over the model must be below 1")
        kept = [
            [
                ((1.0 - s) * self.sizes[n], cost)
                for (s, _, _), (_, _, cost) in zip(self.candidates, self.options[n], strict=True)
            ]
            for n in self.names
        ]
        picked = choose(kept, (1.0 - target) * total)
        choices, configs = self._chosen(picked)
        # The knapsack prunes at least the target; the largest layer gives back the excess.
        largest = max(range(len(choices)), key=lambda i: choices[i].weights)
        c = choices[largest]
        excess = sum(x.sparsity * x.weights for x in choices) - target * total
        s = min(max(c.sparsity - excess / c.weights, 0.0), MAX_LAYER_SPARSITY)
        choices[largest] = dataclasses.replace(c, sparsity=s)
        configs[c.name] = dataclasses.replace(configs[c.name], sparsity=s)
        return BudgetPlan(None, choices, configs, target_sparsity=target)

    def _chosen(self, picked: Sequence[int]) -> tuple[list[LayerChoice], dict[str, SQConfig]]:
        choices, configs = [], {}
        for n, k in zip(self.names, picked, strict=True):
            s, b, g = self.candidates[k]
            cfg = candidate_config(self.base, self.candidates[k])
            configs[n] = cfg  # compress_ fits layers whose inputs are indices data-free itself
            bits, local, cost = self.options[n][k]
            choices.append(LayerChoice(n, self.sizes[n], s, b, g, bits / self.sizes[n], local, cost))
        return choices, configs


def _as_target(target_bpw: Any) -> float:
    try:
        target = float(target_bpw)
    except (TypeError, ValueError):
        raise TypeError(f"target_bpw must be a number, got {type(target_bpw).__name__}") from None
    if not np.isfinite(target) or target <= 0:
        raise ValueError(f"target_bpw must be a positive number, got {target_bpw!r}")
    return target


def measure_sensitivity(
    model: nn.Module,
    layers: Mapping[str, tuple[nn.Module, Any]],
    batches: Sequence[Any],
    base: SQConfig,
    *,
    candidates: Iterable[tuple[float, int, int | None]] | None = None,
    blocks: str | Sequence[str] | None = None,
    progress: Callable[[str], None] | None = None,
) -> Sensitivity:
    """Steps 1 and 2 of the module docstring for ``layers`` (name -> (module, its LayerKind)); the
    model is left unchanged."""
    if base.method != "gptq":
        raise ValueError(
            "the sensitivity of budget mode and of a per-model sparsity is measured with method='gptq'; "
            f"the config has {base.method!r}"
        )
    cands = [
        (
            as_fraction(s, "sparsity"),
            as_int(b, "bits", 1, 8),
            None if g is None else as_int(g, "group_size", 1, 1 << 30),
        )
        for s, b, g in (DEFAULT_CANDIDATES if candidates is None else candidates)
    ]
    if not cands:
        raise ValueError("budget mode needs at least one candidate")
    sens = _Sensitivity(cands, base)
    matrices = {name: kind.matrices(module) for name, (module, kind) in layers.items()}
    calibrated = {n: m for n, (m, kind) in layers.items() if kind.calibrated}
    row_weights = token_counts(model, batches, {n: m for n, (m, kind) in layers.items() if not kind.calibrated})

    with torch.no_grad():
        for name, (_, kind) in layers.items():
            if not kind.calibrated:
                sens.data_free(name, matrices[name], row_weights.get(name))
                if progress:
                    progress(name)

        def measure(names: list[str], hessians: dict[str, list[np.ndarray]]) -> None:
            for n in names:  # nothing is installed: every layer is measured on dense inputs
                sens.calibrated(n, matrices[n], hessians[n])
                if progress:
                    progress(n)

        if calibrated:
            SequentialCalibration(model, batches, calibrated, blocks).run(measure)
        gains = _gains(model, layers, batches, sens)

    names = [n for n in layers if n in sens.local]
    sizes = {n: sum(m.size for m in matrices[n]) for n in names}
    options = {
        n: [
            (
                estimated_bits_per_weight(candidate_config(base, cand), matrices[n][0].shape) * sizes[n],
                sens.local[n][k],
                gains[n] * sens.local[n][k],
            )
            for k, cand in enumerate(cands)
        ]
        for n in names
    }
    return Sensitivity(base, cands, names, sizes, options)


def plan_budget(
    model: nn.Module,
    layers: Mapping[str, tuple[nn.Module, Any]],
    batches: Sequence[Any],
    target_bpw: float,
    base: SQConfig,
    **kwargs: Any,
) -> BudgetPlan:
    """Choose a config per layer for ``target_bpw`` bits per weight over all of ``layers`` (see
    :func:`measure_sensitivity` for the arguments)."""
    _as_target(target_bpw)
    return measure_sensitivity(model, layers, batches, base, **kwargs).plan(target_bpw)


def plan_model_sparsity(
    model: nn.Module,
    layers: Mapping[str, tuple[nn.Module, Any]],
    batches: Sequence[Any],
    config: SQConfig,
    **kwargs: Any,
) -> BudgetPlan:
    """Allocate ``config.sparsity`` over all of ``layers``: per layer, the sparsity near it (same bits
    and group size) that keeps the model closest to the original (see :func:`measure_sensitivity`
    for the arguments)."""
    if config.sparsity <= 0:
        raise ValueError("sparsity_scope='model' needs a config with sparsity > 0")
    sens = measure_sensitivity(model, layers, batches, config, candidates=sparsity_candidates(config), **kwargs)
    return sens.plan_sparsity(config.sparsity)


def _gains(model: nn.Module, layers, batches, sens: _Sensitivity) -> dict[str, float]:
    """End-to-end relative output error per unit of local error, per layer (see the module docstring),
    on the first ``GAIN_BATCHES`` batches."""
    batches = list(batches)[:GAIN_BATCHES]
    reference = [_model_output(model, b) for b in batches]
    energy = sum(float((r**2).sum()) for r in reference)
    k = sens.candidates.index(sens.gain_candidate)
    gains = {}
    for name, (module, kind) in layers.items():
        if name not in sens.local:
            continue
        original = module.weight.detach().clone()
        try:
            kind.assign(module, sens.gain_weights[name])
            err = sum(
                float(((_model_output(model, b) - r) ** 2).sum()) for b, r in zip(batches, reference, strict=True)
            )
        finally:
            module.weight.data.copy_(original)
        local = sens.local[name][k]
        gains[name] = (err / max(energy, 1e-30)) / local if local > 0 else 0.0
    return gains
