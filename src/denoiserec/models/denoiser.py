"""What every denoiser exposes: its per-item judgement of a batch, and its liveness figures.

A denoiser (a model whose levels keep, drop or re-weight the items of a sequence) implements
``denoising(batch) -> Denoising``. The trainer logs :func:`liveness` of it in every batch's loss
parts (keep rate, normalised weight entropy, saturated share), so a level that dies -- a gate
that keeps everything or nothing, weights that go uniform or one-hot, log-probabilities stuck
at 0 -- shows in the per-epoch line and in ``metrics.json``; the denoiser contract test
(``tests/test_denoiser_contract.py``) holds every registered denoiser to bounds on them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

SATURATED = 1e-6  # a log-probability closer than this to 0 is saturated (float32: ~ exactly 0)


@dataclass(frozen=True)
class Denoising:
    """A denoiser's judgement of the items of a batch (padding: weight 0, keep 0).

    Attributes:
        log_probs: (B, L, 2) clean/noise log-probabilities of every item, or None.
        weights: (B, L) soft weights (mean 1 over a row's real items when normalised), or None.
        keep: (B, L) 0/1 hard keep mask (deterministic at evaluation), or None.
    """

    log_probs: torch.Tensor | None = None
    weights: torch.Tensor | None = None
    keep: torch.Tensor | None = None


@dataclass(frozen=True)
class SoftDenoising:
    """A soft level's output for one batch (MSDCCL §4.3 and the like).

    Attributes:
        log_probs: (B, L, 2) clean/noise log-probabilities (0 = clean).
        weights: (B, L) soft weights of the items, 0 on padding.
        embeddings: (B, L, H) re-weighted item values that feed the backbone.
    """

    log_probs: torch.Tensor
    weights: torch.Tensor
    embeddings: torch.Tensor


def weight_entropy(weights: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(B,) entropy of each row's weights normalised to a distribution, divided by log n (1 =
    uniform, 0 = one-hot); rows with a single real item count as 1."""
    mask = mask.to(weights.dtype)
    p = weights.clamp(min=0) * mask
    p = p / p.sum(1, keepdim=True).clamp(min=torch.finfo(p.dtype).tiny)
    entropy = -(p * torch.log(p.clamp(min=torch.finfo(p.dtype).tiny))).sum(1)
    n = mask.sum(1)
    return torch.where(n > 1, entropy / torch.log(n.clamp(min=2)), torch.ones_like(entropy))


def liveness(state: Denoising, mask: torch.Tensor, bound: float = 0.0) -> dict[str, float]:
    """Batch figures of a denoiser's levels: ``kept`` (share of real items kept),
    ``weight_entropy`` (mean normalised entropy, see :func:`weight_entropy`) and ``saturated``
    (share of real items whose judgement no longer moves: with a margin ``bound`` > 0 (the
    readout's ``bound * tanh(m / bound)``), a clean-minus-noise margin at or beyond
    ``bound * tanh(3)``, where its gradient is under 1 % of its largest; without one, a clean
    or noise log-probability within 1e-6 of 0). Margins squashed by a bound never reach
    log-probability 0, so the unbounded rule read 0 while ~95 % of MSDCCL's margins were
    saturated (audit 2026-12-03)."""
    real = mask > 0
    parts: dict[str, float] = {}
    with torch.no_grad():
        if state.keep is not None:
            parts["kept"] = float(state.keep[real].float().mean())
        if state.weights is not None:
            parts["weight_entropy"] = float(weight_entropy(state.weights, mask).mean())
        if state.log_probs is not None:
            log_probs = state.log_probs[real]
            if bound > 0:
                margin = (log_probs[..., 0] - log_probs[..., 1]).abs()
                stuck = margin >= bound * math.tanh(3.0) * (1 - 1e-6)
            else:
                stuck = log_probs.amax(-1) > -SATURATED
            parts["saturated"] = float(stuck.float().mean())
    return {k: v for k, v in parts.items() if not math.isnan(v)}
