"""Dice, DIN's data-adaptive activation (Zhou et al., KDD 2018), in two modes (ATJT spec §5.3).

``proper`` (the paper's): f(x) = p x + (1 - p) alpha x with p = sigmoid(BN(x)), a registered
BatchNorm without affine parameters (running statistics in eval mode) and a learned alpha per
channel (initialised 0). ``atjt`` (the published ATJT code, spec §5.3): a fresh, unregistered
BatchNorm and alpha = 0 on every call, so f(x) = x sigmoid(BN_batch(x)) with the *current
batch's* statistics, in evaluation too (scores then depend on the batch they are scored in).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

DICE_MODES = ("proper", "atjt")


class Dice(nn.Module):
    """Dice over the last dimension of (N, channels) inputs."""

    def __init__(self, channels: int, mode: str = "proper", eps: float = 1e-8) -> None:
        super().__init__()
        self.mode, self.eps = mode, eps
        self.norm = nn.BatchNorm1d(channels, eps=eps, affine=False)
        self.alpha = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.mode == "atjt":  # batch statistics always, alpha fixed at 0 (spec §5.3)
            normed = F.batch_norm(x, None, None, training=True, eps=self.eps)
            return x * torch.sigmoid(normed)
        if self.training and x.shape[0] < 2:  # one row has no batch statistics
            normed = F.batch_norm(x, self.norm.running_mean, self.norm.running_var,
                                  training=False, eps=self.eps)
        else:
            normed = self.norm(x)
        p = torch.sigmoid(normed)
        return p * x + (1 - p) * self.alpha * x


def masked_dice(dice: Dice, x: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
    """Dice on the ``real`` rows of ``x`` (..., channels) only (padding enters no batch
    statistic); padding rows come back as 0."""
    out = x.new_zeros(x.shape)
    out[real] = dice(x[real])
    return out
