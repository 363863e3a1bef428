"""Sampled softmax with logQ correction, for catalogues too large to score in full.

Each batch shares ``k`` negatives drawn with replacement from a proposal ``q`` over items
``1..V`` (uniform, or popularity; the padding id 0 has probability 0 and is never drawn).
Positive and negative logits are corrected by ``- log(k q(item))`` (Jean et al., ACL 2015;
Yi et al., RecSys 2019; TensorFlow's ``sampled_softmax_loss`` with ``subtract_log_q``), and a
negative equal to the row's target (an *accidental hit*) is masked out. The sampled partition
function is then an unbiased estimate of the full one, so the gradient approaches the full
cross-entropy's as ``k`` grows; the loss value itself estimates ``CE + log(k q(target))``, which
is a constant of the parameters (0 when the negatives are the whole catalogue under uniform q).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

REDUCTIONS = ("mean", "none")


def uniform_proposal(n_items: int) -> torch.Tensor:
    """(n_items + 1,) q uniform over items 1..n_items, 0 on the padding id."""
    q = torch.full((n_items + 1,), 1.0 / n_items, dtype=torch.float64)
    q[0] = 0.0
    return q


def popularity_proposal(counts: torch.Tensor | np.ndarray, power: float = 1.0) -> torch.Tensor:
    """(V + 1,) q proportional to ``counts ** power`` (``counts[0]``, padding, is ignored).

    ``power`` < 1 flattens the distribution (0.75 as in word2vec); items with count 0 are
    never drawn.
    """
    weights = torch.as_tensor(counts, dtype=torch.float64).clamp(min=0) ** power
    weights[0] = 0.0
    total = weights.sum()
    if not total > 0:
        raise ValueError("popularity proposal needs at least one item with a positive count")
    return weights / total


def draw_negatives(n_items: int, n: int, proposal: torch.Tensor | None = None,
                   generator: torch.Generator | None = None) -> torch.Tensor:
    """(n,) item ids in 1..n_items drawn with replacement, uniformly or from ``proposal``.

    The padding id 0 is never drawn (its q is 0). ``torch.multinomial`` takes at most 2**24
    categories; uniform draws need no table.
    """
    if proposal is None:
        return torch.randint(1, n_items + 1, (n,), generator=generator)
    if len(proposal) != n_items + 1:
        raise ValueError(f"proposal has {len(proposal)} entries, expected n_items + 1 = "
                         f"{n_items + 1}")
    return torch.multinomial(proposal.to(torch.float64), n, replacement=True,
                             generator=generator)


def sampled_softmax(hidden: torch.Tensor, items: torch.Tensor, targets: torch.Tensor,
                    negatives: torch.Tensor, proposal: torch.Tensor,
                    reduction: str = "mean") -> torch.Tensor:
    """Sampled softmax loss of ``targets`` against shared ``negatives``, logQ-corrected.

    Args:
        hidden: (..., D) one representation per instance (window batches: (B, L, D)).
        items: (V + 1, D) output item table, row 0 the padding item.
        targets: (...) target ids; 0 marks positions without a target (loss 0, not averaged).
        negatives: (k,) shared negative ids drawn from ``proposal`` (e.g. by
            :func:`draw_negatives`), drawn with replacement.
        proposal: (V + 1,) the distribution ``negatives`` were drawn from; every target
            needs ``q > 0`` (its logit is corrected by ``log(k q(target))`` too).
        reduction: ``mean`` over real targets, or ``none`` for the (...) per-target losses.
    """
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {REDUCTIONS}, got '{reduction}'")
    shape = targets.shape
    targets = targets.reshape(-1)
    real = targets != 0
    h, t = hidden.reshape(-1, hidden.shape[-1])[real], targets[real]
    q = proposal.to(hidden.device)  # keep it there to avoid a copy per batch

    def log_kq(ids: torch.Tensor) -> torch.Tensor:
        return torch.log(len(negatives) * q[ids]).to(hidden.dtype)

    positive = (h * items[t]).sum(-1) - log_kq(t)  # (n,)
    negative = h @ items[negatives].T - log_kq(negatives)  # (n, k)
    negative = negative.masked_fill(negatives[None, :] == t[:, None], float("-inf"))
    logits = torch.cat([positive[:, None], negative], dim=1)
    losses = F.cross_entropy(logits, torch.zeros_like(t), reduction="none")
    if reduction == "mean":
        return losses.mean()
    return losses.new_zeros(len(targets)).masked_scatter(real, losses).reshape(shape)


def sampled_softmax_loss(hidden: torch.Tensor, items: torch.Tensor, targets: torch.Tensor,
                         n_negatives: int, proposal: torch.Tensor | None = None,
                         generator: torch.Generator | None = None,
                         reduction: str = "mean") -> torch.Tensor:
    """Draw ``n_negatives`` shared negatives (uniform when ``proposal`` is None) and return
    :func:`sampled_softmax`; deterministic given ``generator``."""
    n_items = items.shape[0] - 1
    negatives = draw_negatives(n_items, n_negatives, proposal, generator).to(hidden.device)
    if proposal is None:
        proposal = uniform_proposal(n_items)
    return sampled_softmax(hidden, items, targets, negatives, proposal, reduction)
