"""The ratio gate (``nn.gumbel.ratio_keep``, MSDCCL's and MGSD-WSS's default item gate) against
a brute-force reference: each row keeps exactly its n - floor(ratio * n) real items of highest
margin, ties included (margins saturate at the readout's bound, so ties happen)."""

from __future__ import annotations

import math

import pytest
import torch

from denoiserec.nn.gumbel import ratio_keep


def brute_force_keep(margin: torch.Tensor, mask: torch.Tensor, ratio: float) -> torch.Tensor:
    """Row by row: drop the floor(ratio * n) lowest real margins, the older of tied ones first."""
    keep = torch.zeros_like(margin)
    for row in range(margin.shape[0]):
        real = [i for i in range(margin.shape[1]) if mask[row, i] > 0]
        dropped = math.floor(ratio * len(real))
        by_margin = sorted(real, key=lambda i: (float(margin[row, i]), i))
        for i in by_margin[dropped:]:
            keep[row, i] = 1.0
    return keep


@pytest.mark.parametrize("ratio", [0.0, 0.2, 0.6])
def test_random_margins_keep_what_brute_force_keeps(ratio: float) -> None:
    generator = torch.Generator().manual_seed(3)
    margin = torch.randn(40, 12, generator=generator)
    mask = (torch.rand(40, 12, generator=generator) > 0.3).float()
    keep = ratio_keep(margin, mask, ratio, tau=0.5, sample=False)
    assert torch.equal(keep.detach(), brute_force_keep(margin, mask, ratio))


def test_tied_margins_still_drop_exactly_the_share() -> None:
    saturated = torch.full((1, 10), 3.0)  # every margin at the bound
    one_low = torch.tensor([[1.0] + [3.0] * 9])
    mask = torch.ones(1, 10)
    for margin in (saturated, one_low):
        keep = ratio_keep(margin, mask, 0.2, tau=0.5, sample=False).detach()
        assert float(keep.sum()) == 8  # the threshold rule kept 0 of them
        assert torch.equal(keep, brute_force_keep(margin, mask, 0.2))


def test_the_mask_is_exactly_binary_forward_and_carries_a_gradient() -> None:
    margin = torch.randn(4, 9, requires_grad=True)
    keep = ratio_keep(margin, torch.ones(4, 9), 0.3, tau=0.5, sample=True)
    assert set(keep.detach().unique().tolist()) <= {0.0, 1.0}
    (keep * torch.arange(9.0)).sum().backward()
    assert margin.grad is not None and float(margin.grad.abs().sum()) > 0
