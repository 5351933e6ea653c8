"""A small CNN on scikit-learn's bundled digits (8 x 8 images, 10 classes): real data that ships with
a package, used by the DeepTwist experiment and the demo. Needs torch and scikit-learn.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F


@dataclass(frozen=True)
class DigitsData:
    x_train: torch.Tensor  # (n, 1, 8, 8) float32 in [0, 1]
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor


def load_digits_split(test_fraction: float = 0.3, seed: int = 0) -> DigitsData:
    """Stratified train/test split of the 1797 digits, pixels scaled to [0, 1]."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    x = (digits.images / 16.0).astype(np.float32)[:, None]
    y = digits.target.astype(np.int64)
    x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=test_fraction, random_state=seed, stratify=y)
    return DigitsData(*(torch.from_numpy(a) for a in (x_tr, y_tr, x_te, y_te)))


class DigitsCNN(nn.Module):
    """conv 1->32 (3x3) -> conv 32->64 (3x3) -> 2x2 max-pool -> linear 1024->128 -> linear 128->10."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32, 3, padding=1)
        self.conv2 = nn.Conv2d(32, 64, 3, padding=1)
        self.fc1 = nn.Linear(64 * 4 * 4, 128)
        self.fc2 = nn.Linear(128, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.conv1(x))
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        return self.fc2(F.relu(self.fc1(x.flatten(1))))


def train(
    model: nn.Module,
    data: DigitsData,
    epochs: int,
    lr: float = 1e-3,
    batch_size: int = 32,
    seed: int = 0,
    optimizer: torch.optim.Optimizer | None = None,
    on_epoch: Callable[[int], None] | None = None,
) -> torch.optim.Optimizer:
    """Plain Adam training with cross-entropy; returns the optimizer (hooks may be attached to it)."""
    opt = optimizer or torch.optim.Adam(model.parameters(), lr=lr)
    gen = torch.Generator().manual_seed(seed)
    n = len(data.x_train)
    model.train()
    for epoch in range(epochs):
        for idx in torch.randperm(n, generator=gen).split(batch_size):
            opt.zero_grad()
            F.cross_entropy(model(data.x_train[idx]), data.y_train[idx]).backward()
            opt.step()
        if on_epoch:
            on_epoch(epoch)
    return opt


@torch.no_grad()
def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    model.eval()
    return float((model(x).argmax(1) == y).float().mean())
