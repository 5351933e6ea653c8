"""DeepTwist (Lee, Kapoor & Kim 2018): compress by occasionally distorting the weights of an
ordinary training loop.

Between distortions training is left alone: any optimizer, any loss, full-precision weights, no
masks and no straight-through estimator (pruned weights may grow back). Every ``period`` optimizer
steps (S_D in the paper) each tracked weight is overwritten with its compressed version, so the
network learns to sit close to what the compressed format can express. The last distortion is the
deployed model: :meth:`DeepTwist.encode` produces exactly it in the XOR-coded format.

    twist = DeepTwist(model_weights, Distortion(LowRankPruning(0.9, rank=4), bits=2), period=50)
    twist.attach(optimizer)          # or call twist.step() after each optimizer.step()
    ... train ...
    encoded = twist.encode()         # name -> EncodedWeight of the final distortion

Requires torch (imported by this module only).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

import numpy as np
import torch

from .distortion import Distortion
from .formats.xor_codec import EncodedWeight, decode
from .masks import MaskFormat


def linear_and_conv_weights(model: torch.nn.Module, exclude: Iterable[str] = ()) -> dict[str, torch.nn.Parameter]:
    """``{module name: weight}`` of every Linear and Conv1d/2d/3d layer, except the named ones."""
    skip = set(exclude)
    kinds = (torch.nn.Linear, torch.nn.Conv1d, torch.nn.Conv2d, torch.nn.Conv3d)
    return {name: m.weight for name, m in model.named_modules() if isinstance(m, kinds) and name not in skip}


class DeepTwist:
    """Applies a :class:`~sparsecodec.distortion.Distortion` to tracked weights every ``period`` steps.

    Args:
        weights: ``{name: parameter}`` (see :func:`linear_and_conv_weights`).
        distortion: one distortion for all weights, or ``{name: distortion}``.
        period: optimizer steps between distortions (S_D).
        freeze_masks_at: from this step on, distortions and :meth:`encode` reuse the masks of the
            last distortion instead of choosing new ones, and pruned weights are held at zero after
            every step (masked fine-tuning), so the final phase of training adapts to the mask that
            is deployed. Set it where the sparsity schedule reaches its final value.
    """

    def __init__(
        self,
        weights: Mapping[str, torch.Tensor],
        distortion: Distortion | Mapping[str, Distortion],
        period: int,
        freeze_masks_at: int | None = None,
    ):
        if not weights:
            raise ValueError("DeepTwist needs at least one weight to distort")
        if isinstance(period, bool) or not isinstance(period, int) or period < 1:
            raise ValueError(f"period must be a positive integer, got {period!r}")
        self.weights = dict(weights)
        if isinstance(distortion, Distortion):
            self.distortions = {name: distortion for name in self.weights}
        else:
            missing = set(self.weights) - set(distortion)
            if missing:
                raise ValueError(f"no distortion given for {sorted(missing)}")
            self.distortions = {name: distortion[name] for name in self.weights}
        self.period = period
        self.freeze_masks_at = freeze_masks_at
        self.steps = 0
        self.masks: dict[str, MaskFormat] = {}
        self._dense_masks: dict[str, torch.Tensor] = {}  # frozen masks as tensors, for masked steps

    def step(self) -> bool:
        """Count one optimizer step; distort when the period is reached. Returns whether it did."""
        self.steps += 1
        if self.steps % self.period:
            if self.masks_frozen:
                self._apply_masks()
            return False
        self.distort()
        return True

    @property
    def masks_frozen(self) -> bool:
        return self.freeze_masks_at is not None and self.steps >= self.freeze_masks_at and bool(self.masks)

    def distort(self) -> None:
        """Overwrite every tracked weight with its compressed version now."""
        with torch.no_grad():
            for name, param in self.weights.items():
                fixed = self.masks.get(name) if self.masks_frozen else None
                distorted, mask = self.distortions[name].apply(_to_numpy(param), self.steps, fixed)
                param.copy_(torch.from_numpy(distorted).to(dtype=param.dtype, device=param.device))
                if mask is not self.masks.get(name):
                    self._dense_masks.pop(name, None)
                self.masks[name] = mask

    def _apply_masks(self) -> None:
        with torch.no_grad():
            for name, param in self.weights.items():
                keep = self._dense_masks.get(name)
                if keep is None:
                    keep = torch.from_numpy(self.masks[name].to_dense()).reshape(tuple(param.shape)).to(param.device)
                    self._dense_masks[name] = keep
                param.mul_(keep)

    def attach(self, optimizer: torch.optim.Optimizer) -> Any:
        """Call :meth:`step` after every ``optimizer.step()``; returns the hook handle (``.remove()``)."""
        hook: Callable[..., None] = lambda *_: self.step()  # noqa: E731
        return optimizer.register_step_post_hook(hook)

    def encode(self, **xor_options: Any) -> dict[str, EncodedWeight]:
        """The final distortion of every tracked weight, XOR-coded (``xor_options`` go to
        :func:`sparsecodec.encode`). Loading :func:`sparsecodec.decode` of them into the weights
        (see :meth:`load`) gives exactly ``distort()``'s result."""
        return {
            name: self.distortions[name].encode(
                _to_numpy(param), self.steps, self.masks.get(name) if self.masks_frozen else None, **xor_options
            )
            for name, param in self.weights.items()
        }

    def load(self, encoded: Mapping[str, EncodedWeight]) -> None:
        """Write decoded weights into the tracked parameters (reshaped to each parameter's shape)."""
        with torch.no_grad():
            for name, enc in encoded.items():
                param = self.weights[name]
                dense = decode(enc).reshape(tuple(param.shape))
                param.copy_(torch.from_numpy(dense).to(dtype=param.dtype, device=param.device))


def _to_numpy(param: torch.Tensor) -> np.ndarray:
    return param.detach().to("cpu", torch.float32).numpy()
