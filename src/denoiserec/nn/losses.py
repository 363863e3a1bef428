"""Next-item training losses: softmax cross-entropy over all items, and BPR with negatives.

Both accept one representation per instance, (B, D) with (B,) targets, or one per position,
(B, L, D) with (B, L) targets where 0 marks positions without a target (window training).
As in RecBole, the cross-entropy softmax includes the padding column.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from denoiserec.nn.sampled_softmax import sampled_softmax_loss

LOSSES = ("ce", "bpr", "sampled")


@dataclass(frozen=True)
class Objective:
    """The next-item loss: ``kind`` (ce | bpr | sampled), negatives per positive (bpr) or per
    batch (sampled), and the label smoothing of ``ce``."""

    kind: str = "ce"
    n_negatives: int = 1
    label_smoothing: float = 0.0


def cross_entropy(hidden: torch.Tensor, items: torch.Tensor, targets: torch.Tensor,
                  label_smoothing: float = 0.0, reduction: str = "mean") -> torch.Tensor:
    """CE of ``targets`` under softmax(hidden @ items.T), ignoring targets equal to 0: the mean,
    or (``reduction="none"``) one value per real target, in order.

    Positions without a target are dropped *before* scoring: window batches of short sequences
    are mostly padding, and their logits over every item would be computed for nothing.
    """
    targets = targets.reshape(-1)
    real = targets != 0
    logits = hidden.reshape(-1, hidden.shape[-1])[real] @ items.T
    return F.cross_entropy(logits, targets[real], label_smoothing=label_smoothing,
                           reduction=reduction)


def bpr(hidden: torch.Tensor, items: torch.Tensor, targets: torch.Tensor,
        negatives: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """-log sigmoid(s(pos) - s(neg)) over every (positive, negative) pair: the mean, or
    (``reduction="none"``) each real target's mean over its negatives."""
    hidden = hidden.reshape(-1, hidden.shape[-1])
    targets = targets.reshape(-1)
    negatives = negatives.reshape(len(targets), -1)
    real = targets != 0
    hidden, targets, negatives = hidden[real], targets[real], negatives[real]
    positive = (hidden * items[targets]).sum(-1, keepdim=True)  # (n, 1)
    negative = torch.einsum("nd,nkd->nk", hidden, items[negatives])  # (n, k)
    pairs = -F.logsigmoid(positive - negative)
    return pairs.mean(1) if reduction == "none" else pairs.mean()


def uniform_negatives(targets: torch.Tensor, n_items: int, n: int,
                     generator: torch.Generator | None = None) -> torch.Tensor:
    """Uniform negatives in 1..n_items of shape (*targets, n), redrawn where equal to the
    positive."""
    shape = (*targets.shape, n)
    negatives = torch.randint(1, n_items + 1, shape, device=targets.device, generator=generator)
    clash = negatives == targets[..., None]
    while clash.any():
        redraw = torch.randint(1, n_items + 1, (int(clash.sum()),), device=targets.device,
                               generator=generator)
        negatives[clash] = redraw
        clash = negatives == targets[..., None]
    return negatives


def next_item_loss(hidden: torch.Tensor, items: torch.Tensor, targets: torch.Tensor,
                   objective: Objective, negatives: torch.Tensor | None) -> torch.Tensor:
    if objective.kind == "ce":
        return cross_entropy(hidden, items, targets, objective.label_smoothing)
    if objective.kind == "sampled":
        return sampled_softmax_loss(hidden, items, targets, objective.n_negatives)
    if objective.kind == "bpr":
        if negatives is None:
            raise ValueError("BPR needs sampled negatives in the batch")
        return bpr(hidden, items, targets, negatives)
    raise ValueError(f"loss must be one of {LOSSES}, got '{objective.kind}'")
