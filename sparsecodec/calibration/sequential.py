"""Sequential calibration: layers compressed in forward order, each on inputs that already passed
through the compressed layers before it, so that errors do not compound.

The pipeline (llmcompressor calls it "sequential"; GPTQ's code does it block by block):

1. One forward pass of the first batch finds the order in which the layers to calibrate are called,
   which of them read the same input (a transformer block's query, key and value projections), and
   the repeated blocks of the model (``find_blocks``: the longest run of identical modules in a
   ``ModuleList``/``Sequential``, or the container the caller names).
2. Layers before the first block are calibrated on the whole model's forward pass; then the inputs
   of the first block are captured for every batch and each block is handled alone on its cached
   inputs; its outputs become the next block's inputs. (If the discovery pass shows that a block's
   output is not the next block's input, say a residual is added outside the blocks, each block's
   inputs are captured from the model's own forward pass instead, stopped at that block.) Layers
   after the last block (a pooler, a head) are calibrated on the whole model again.
3. Within a segment, a *stage* is the set of layers that read one input. For each stage, one pass
   over the batches gathers the Hessian of that input (the pass stops as soon as the input has been
   seen), the caller compresses the stage's layers (they are independent, so an executor may take
   them in parallel) and writes their decoded weights into the model; later stages then see the
   compressed outputs.

Peak memory is the model, one segment's inputs for the calibration set, and the Hessians of one
stage. The pipeline changes nothing itself: the caller's ``compress_stage`` callback writes weights,
and the caller restores them if anything fails.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from .hessian import HessianSum, input_rows

#: compress_stage(names, hessians): compress these layers (one Hessian per weight matrix of each).
StageCallback = Callable[[list[str], dict[str, list[np.ndarray]]], None]


class _StopForward(Exception):
    """Raised inside a hook to end a forward pass once what it was run for has been seen."""


def run_model(model: nn.Module, batch: Any) -> Any:
    """Call ``model`` on one calibration batch: a tensor, a tuple of positional inputs, or a mapping
    of keyword arguments (a tokenizer's output)."""
    if isinstance(batch, torch.Tensor):
        return model(batch)
    if isinstance(batch, Mapping):
        return model(**batch)
    if isinstance(batch, (tuple, list)):
        return model(*batch)
    raise TypeError(
        f"a calibration batch must be a tensor, a tuple of inputs or a dict of keyword inputs, "
        f"got {type(batch).__name__}"
    )


def token_mask(batch: Any) -> torch.Tensor | None:
    """The batch's ``attention_mask`` (1 = real token, 0 = padding), if it has one."""
    if isinstance(batch, Mapping) and isinstance(batch.get("attention_mask"), torch.Tensor):
        return batch["attention_mask"]
    return None


def as_batches(calibration: Iterable[Any]) -> list[Any]:
    """The calibration batches as a list (a generator is consumed once), at least one."""
    if isinstance(calibration, (torch.Tensor, Mapping)):
        batches = [calibration]
    else:
        try:
            batches = list(calibration)
        except TypeError:
            raise TypeError(
                f"calibration must be an iterable of model inputs, got {type(calibration).__name__}"
            ) from None
    if not batches:
        raise ValueError("calibration holds no batches")
    return batches


def check_batches(model: nn.Module, batches: Sequence[Any]) -> None:
    """Run the (unchanged) model on every batch; a batch that does not fit raises one ValueError."""
    for i, batch in enumerate(batches):
        try:
            run_model(model, batch)
        except TypeError as exc:
            if "calibration batch must be" in str(exc):
                raise
            raise ValueError(f"calibration batch {i} does not fit the model: {exc}") from None
        except (RuntimeError, ValueError, IndexError, KeyError) as exc:
            raise ValueError(f"calibration batch {i} does not fit the model: {str(exc).splitlines()[0]}") from None


def find_blocks(model: nn.Module, targets: Iterable[str]) -> list[str]:
    """Names of the model's repeated blocks: the children of the ``ModuleList``/``Sequential`` whose
    children (at least two) all share one class and which holds the most of ``targets``."""
    wanted = list(targets)
    best: tuple[int, list[str]] = (0, [])
    for name, module in model.named_modules():
        if not isinstance(module, (nn.ModuleList, nn.Sequential)) or len(module) < 2:
            continue
        children = list(module.named_children())
        if len({type(m) for _, m in children}) != 1:
            continue
        names = [f"{name}.{child}" if name else child for child, _ in children]
        held = sum(any(t.startswith(n + ".") for n in names) for t in wanted)
        if held > best[0]:
            best = (held, names)
    return best[1]


def resolve_blocks(model: nn.Module, blocks: str | Sequence[str] | None, targets: Iterable[str]) -> list[str]:
    """The block names ``blocks`` stands for: None finds them, a container's name takes its
    children, a list is taken as it is, ``[]`` means none (the whole model is one segment)."""
    if blocks is None:
        return find_blocks(model, targets)
    if isinstance(blocks, str):
        try:
            container = model.get_submodule(blocks)
        except AttributeError:
            raise ValueError(f"blocks={blocks!r}: the model has no module of that name") from None
        names = [f"{blocks}.{child}" for child, _ in container.named_children()]
        if not names:
            raise ValueError(f"blocks={blocks!r} has no child modules to take as blocks")
        return names
    names = list(blocks)
    for n in names:
        try:
            model.get_submodule(n)
        except AttributeError:
            raise ValueError(f"blocks: the model has no module named {n!r}") from None
    return names


@dataclass
class _Discovery:
    """What one forward pass showed: call order, input identity and call counts."""

    first_call: dict[str, int] = field(default_factory=dict)
    signature: dict[str, tuple] = field(default_factory=dict)
    calls: dict[str, int] = field(default_factory=dict)
    block_entries: list[tuple[int, str]] = field(default_factory=list)
    block_inputs: list[Any] = field(default_factory=list)
    block_outputs: list[Any] = field(default_factory=list)
    clock: int = 0

    def chained(self) -> bool:
        """Whether each block's output is exactly the next block's hidden-state input (a residual
        added outside the blocks breaks this)."""
        for out, nxt in zip(self.block_outputs[:-1], self.block_inputs[1:], strict=True):
            hidden = out if isinstance(out, torch.Tensor) else out[0] if isinstance(out, (tuple, list)) else None
            if not isinstance(hidden, torch.Tensor) or not isinstance(nxt, torch.Tensor):
                return False
            if hidden.shape != nxt.shape or not torch.equal(hidden, nxt):
                return False
        return True


def token_counts(
    model: nn.Module, batches: Sequence[Any], embeddings: Mapping[str, nn.Module]
) -> dict[str, np.ndarray]:
    """Per embedding, how often each row is looked up in the calibration batches, plus one (rows
    the calibration text never uses still count). An embedding is a linear layer on one-hot inputs:
    its Hessian is diagonal, these counts, so Wanda's and SparseGPT's scores for it are both the
    magnitude weighted by the row's count (:func:`sparsecodec.masks.pruning.frequency_weighted_mask`)
    and GPTQ is round to nearest."""
    counts = {n: np.ones(m.weight.shape[0]) for n, m in embeddings.items()}
    handles = []
    for n, m in embeddings.items():

        def hook(module, args, n=n):
            idx = args[0].reshape(-1).to(torch.int64).numpy()
            counts[n] += np.bincount(idx, minlength=len(counts[n]))[: len(counts[n])]

        handles.append(m.register_forward_pre_hook(hook))
    try:
        with torch.no_grad():
            for b in batches:
                run_model(model, b)
    finally:
        for h in handles:
            h.remove()
    return counts


def _signature(x: torch.Tensor) -> tuple:
    # the same tensor object is what query, key and value receive; the sum guards against a freed
    # tensor's storage being reused by a different one of the same shape
    return (x.data_ptr(), tuple(x.shape), tuple(x.stride()), float(x.detach().double().sum()))


class SequentialCalibration:
    """Drives the pipeline of the module docstring over ``targets`` (layer name -> module)."""

    def __init__(
        self,
        model: nn.Module,
        batches: Sequence[Any],
        targets: Mapping[str, nn.Module],
        blocks: str | Sequence[str] | None = None,
    ):
        self.model = model
        self.batches = list(batches)
        self.targets = dict(targets)
        self.blocks = resolve_blocks(model, blocks, self.targets)
        self._explicit_blocks = blocks is not None
        self._mask: torch.Tensor | None = None
        self.unused: list[str] = []  # targets no calibration forward pass reached

    # -- discovery ------------------------------------------------------------------------------
    def _discover(self) -> _Discovery:
        found = _Discovery()
        handles = []

        def layer_hook(name):
            def hook(module, args):
                found.calls[name] = found.calls.get(name, 0) + 1
                if name not in found.first_call:
                    found.first_call[name] = found.clock
                    found.signature[name] = _signature(args[0])
                    found.clock += 1

            return hook

        def block_hook(name):
            def hook(module, args, kwargs):
                found.block_entries.append((found.clock, name))
                found.block_inputs.append(_hidden_input(args, kwargs))
                found.clock += 1

            return hook

        def block_output_hook(module, args, output):
            found.block_outputs.append(output)

        try:
            for name, module in self.targets.items():
                handles.append(module.register_forward_pre_hook(layer_hook(name)))
            for name in self.blocks:
                block = self.model.get_submodule(name)
                handles.append(block.register_forward_pre_hook(block_hook(name), with_kwargs=True))
                handles.append(block.register_forward_hook(block_output_hook))
            run_model(self.model, self.batches[0])
        finally:
            for h in handles:
                h.remove()
        return found

    def _usable_blocks(self, found: _Discovery) -> list[str]:
        entered = [name for _, name in found.block_entries]
        if entered == self.blocks:
            return self.blocks
        if self._explicit_blocks:
            raise ValueError(
                "the blocks given are not each called once, in order, by the model's forward pass "
                f"(called: {entered[:8]}{' ...' if len(entered) > 8 else ''})"
            )
        return []  # found blocks that do not behave as a stack: calibrate on the whole model

    @staticmethod
    def _stages(names: list[str], found: _Discovery) -> list[list[str]]:
        """Layers grouped by the input they read, in the order that input is first read."""
        groups: dict[tuple, list[str]] = {}
        for n in sorted(names, key=found.first_call.__getitem__):
            groups.setdefault(found.signature[n], []).append(n)
        return list(groups.values())

    # -- running --------------------------------------------------------------------------------
    def run(self, compress_stage: StageCallback) -> None:
        """Calibrate and compress every target that the forward pass reaches, in order."""
        found = self._discover()
        self.unused = [n for n in self.targets if n not in found.first_call]
        reached = [n for n in self.targets if n in found.first_call]
        blocks = self._usable_blocks(found)
        first_block = found.block_entries[0][0] if blocks else None

        def in_block(n: str) -> str | None:
            return next((b for b in blocks if n.startswith(b + ".")), None)

        outside = [n for n in reached if in_block(n) is None]
        prefix = [n for n in outside if first_block is not None and found.first_call[n] < first_block]
        suffix = [n for n in outside if n not in prefix]
        model_runner = [lambda i=i: run_model(self.model, self.batches[i]) for i in range(len(self.batches))]

        self._run_segment(model_runner, self._stages(prefix, found), found, compress_stage)
        chained = bool(blocks) and found.chained()
        inputs = self._block_inputs(blocks[0]) if blocks else []
        for b in blocks:
            block = self.model.get_submodule(b)
            if not chained:  # capture this block's inputs from the model itself (slower, always right)
                inputs = self._block_inputs(b)
            runners = [lambda a=a, k=k, block=block: block(*a, **k) for a, k in inputs]
            mine = [n for n in reached if in_block(n) == b]
            self._run_segment(runners, self._stages(mine, found), found, compress_stage)
            if chained:
                inputs = [_next_inputs(block(*a, **k), a, k) for a, k in inputs]
        self._run_segment(model_runner, self._stages(suffix, found), found, compress_stage)

    def _run_segment(self, runners, stages: list[list[str]], found: _Discovery, compress_stage: StageCallback) -> None:
        for stage in stages:
            head = self.targets[stage[0]]
            sums: list[HessianSum] = []
            # a layer called more than once per forward (shared) must see every call
            hook = self._gather_hook(sums, stop_early=all(found.calls[n] == 1 for n in stage))
            handle = head.register_forward_pre_hook(hook)
            try:
                for i, run in enumerate(runners):
                    self._mask = token_mask(self.batches[i])
                    try:
                        run()
                    except _StopForward:
                        pass
            finally:
                handle.remove()
                self._mask = None
            hessians = [acc.hessian() for acc in sums]
            compress_stage(stage, {n: hessians for n in stage})

    def _gather_hook(self, sums: list[HessianSum], stop_early: bool):
        """A forward pre-hook adding the layer's input rows to ``sums`` (one per weight matrix)."""

        def hook(module, args):
            rows = input_rows(module, args[0], self._mask)
            if not sums:
                sums.extend(HessianSum(r.shape[1]) for r in rows)
            for acc, r in zip(sums, rows, strict=True):
                acc.add(r)
            if stop_early:
                raise _StopForward

        return hook

    def _block_inputs(self, block_name: str) -> list[tuple[tuple, dict]]:
        """The inputs ``block_name`` receives for every batch, from the model's forward pass (stopped
        there)."""
        captured: list[tuple[tuple, dict]] = []

        def hook(module, args, kwargs):
            captured.append((args, kwargs))
            raise _StopForward

        handle = self.model.get_submodule(block_name).register_forward_pre_hook(hook, with_kwargs=True)
        try:
            for batch in self.batches:
                try:
                    run_model(self.model, batch)
                except _StopForward:
                    pass
        finally:
            handle.remove()
        if len(captured) != len(self.batches):
            raise ValueError(f"block {block_name!r} was not reached by every calibration batch")
        return captured


def _hidden_input(args: tuple, kwargs: dict) -> Any:
    """A block's hidden-state input: its first positional tensor, or ``hidden_states=``."""
    if args and isinstance(args[0], torch.Tensor):
        return args[0]
    return kwargs.get("hidden_states")


def _next_inputs(output: Any, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
    """The inputs of the next block: these with the hidden state replaced by this block's output."""
    hidden = output if isinstance(output, torch.Tensor) else output[0]
    if args and isinstance(args[0], torch.Tensor):
        return (hidden, *args[1:]), kwargs
    if isinstance(kwargs.get("hidden_states"), torch.Tensor):
        return args, {**kwargs, "hidden_states": hidden}
    raise ValueError("cannot tell which input of a block is its hidden state (not the first positional argument)")
