"""The Hessian ``X^T X`` of a layer's inputs over calibration data, the statistic GPTQ, SparseGPT and
Wanda use.

A layer's forward input is turned into the rows X its weight matrix multiplies: the tokens of a
linear layer (padding positions of the batch's ``attention_mask`` left out), the unfolded patches of a
convolution (one matrix per group). Sums are kept in float64; :meth:`HessianSum.hessian` returns the
mean over the rows seen (the scale does not matter to the methods; the mean keeps it readable).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from ..nn.registry import is_hf_conv1d


def token_rows(x: torch.Tensor, token_mask: torch.Tensor | None) -> torch.Tensor:
    """(..., d) -> (n, d): every position, or only the kept ones of a (batch, tokens) mask when the
    input's leading dimensions are (batch, tokens)."""
    if token_mask is not None and x.dim() >= 3 and tuple(x.shape[:2]) == tuple(token_mask.shape):
        x = x[token_mask.to(torch.bool)]
    return x.reshape(-1, x.shape[-1])


def input_rows(module: nn.Module, x: torch.Tensor, token_mask: torch.Tensor | None) -> list[torch.Tensor]:
    """The input rows of each weight matrix of ``module`` (in stream order) for forward input ``x``."""
    if isinstance(module, nn.Linear) or is_hf_conv1d(module):
        return [token_rows(x, token_mask)]
    if isinstance(module, nn.Conv2d):
        return _conv_patches(module, x)
    raise TypeError(f"no input statistics for {type(module).__name__} layers")


def _conv_patches(conv: nn.Conv2d, x: torch.Tensor) -> list[torch.Tensor]:
    if x.dim() == 3:
        x = x.unsqueeze(0)
    if isinstance(conv.padding, str):  # 'valid' or 'same' (stride 1): pad as torch does
        if conv.padding == "valid":
            pad = [0, 0, 0, 0]
        else:
            pad = []
            for k, d in zip(reversed(conv.kernel_size), reversed(conv.dilation), strict=True):
                total = d * (k - 1)
                pad += [total // 2, total - total // 2]
    else:
        ph, pw = conv.padding
        pad = [pw, pw, ph, ph]
    mode = "constant" if conv.padding_mode == "zeros" else conv.padding_mode
    if any(pad):
        x = F.pad(x, pad, mode=mode)
    per = conv.in_channels // conv.groups
    out = []
    for g in range(conv.groups):
        cols = F.unfold(x[:, g * per : (g + 1) * per], conv.kernel_size, dilation=conv.dilation, stride=conv.stride)
        out.append(cols.transpose(1, 2).reshape(-1, cols.shape[1]))
    return out


class HessianSum:
    """Running ``X^T X`` (float64) and row count of one weight matrix's inputs."""

    def __init__(self, dim: int):
        self.sum = torch.zeros(dim, dim, dtype=torch.float64)
        self.rows = 0

    def add(self, rows: torch.Tensor) -> None:
        r = rows.detach().to(torch.float64)
        if r.shape[-1] != self.sum.shape[0]:
            raise ValueError(f"inputs have {r.shape[-1]} features, the layer takes {self.sum.shape[0]}")
        self.sum.addmm_(r.T, r)
        self.rows += r.shape[0]

    def hessian(self) -> np.ndarray:
        """The mean ``X^T X / n`` as a float64 array (zeros if no row was seen)."""
        return (self.sum / max(self.rows, 1)).numpy()
