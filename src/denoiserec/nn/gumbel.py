"""Hard item selection: a straight-through Gumbel-softmax gate, its fallback and compaction.

Shared by the denoisers that keep or drop items with a binary decision (MSDCCL's hard level,
MGSD-WSS, END4Rec). The gate is applied to **log-probabilities** (or logits: the same thing up
to a per-row constant), never to probabilities: Gumbel noise added to values in [0, 1] would
swamp them and turn the decision into a near coin flip (msdccl spec §2.5, §7.3).

* :func:`straight_through_gumbel` -- forward exactly one-hot, backward through the soft sample.
* :func:`centred_gate_logits` -- a binary gate relative to the row's mean keep logit.
* :func:`ratio_keep` -- drop a fixed share of each row, the lowest keep margins.
* :func:`keep_most_recent_if_empty` -- a row that keeps nothing keeps its most recent item.
* :func:`compact_kept` -- move the kept items of each row to the front, order preserved.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def straight_through_gumbel(log_probs: torch.Tensor, tau: float, sample: bool = True,
                            generator: torch.Generator | None = None) -> torch.Tensor:
    """One-hot choice over the last dimension with a straight-through gradient.

    Args:
        log_probs: (..., K) log-probabilities or logits of the K classes.
        tau: temperature of the soft sample (it shapes the gradient only; the forward choice
            of a sampled gate is argmax(log_probs + g) whatever ``tau``).
        sample: add Gumbel(0, 1) noise (training); without it the choice is the deterministic
            argmax (evaluation: the same input always gives the same mask).
        generator: optional RNG of the Gumbel noise.

    Returns:
        (..., K) tensor whose forward values are exactly 0/1 (one 1 per row) and whose gradient
        is that of ``softmax((log_probs + g) / tau)``.
    """
    logits = log_probs
    if sample:
        uniform = torch.rand(log_probs.shape, device=log_probs.device, dtype=log_probs.dtype,
                             generator=generator)
        tiny = torch.finfo(log_probs.dtype).tiny
        logits = log_probs - torch.log(-torch.log(uniform.clamp(min=tiny)))  # + Gumbel(0, 1)
    soft = F.softmax(logits / tau, dim=-1)
    hard = F.one_hot(logits.argmax(-1), log_probs.shape[-1]).to(soft.dtype)
    # (soft - soft.detach()) is exactly 0 in the forward pass, so the result is exactly binary;
    # the usual ``hard - soft.detach() + soft`` can round to 1 +- 1 ulp.
    return hard + (soft - soft.detach())


def centred_gate_logits(log_probs: torch.Tensor, mask: torch.Tensor,
                        bias: float = 0.0) -> torch.Tensor:
    """(B, L, 2) keep/drop logits ``[m_i - mean_real(m) + bias, 0]`` from (B, L, 2) keep/drop
    log-probabilities, where ``m_i = log p_keep - log p_drop`` and the mean runs over the real
    items (``mask`` (B, L) 1 on real items). The gate then keeps an item with probability
    sigmoid(m_i - mean + bias): its level no longer drifts with the scorer's calibration."""
    margin = log_probs[..., 0] - log_probs[..., 1]  # (B, L)
    mean = (margin * mask).sum(1, keepdim=True) / mask.sum(1, keepdim=True).clamp(min=1)
    centred = margin - mean + bias
    return torch.stack([centred, torch.zeros_like(centred)], -1)


def keep_most_recent_if_empty(keep: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Set ``keep`` to 1 at position ``lengths - 1`` of the rows that keep nothing.

    Args:
        keep: (B, L) 0/1 keep mask (float, may carry a straight-through gradient).
        lengths: (B,) real items per row (right-padded rows: the most recent is at length - 1).
    """
    empty = keep.detach().sum(1) == 0  # (B,)
    last = torch.arange(keep.shape[1], device=keep.device)[None, :] == (lengths - 1)[:, None]
    return torch.where(empty[:, None] & last, torch.ones_like(keep), keep)


def compact_kept(items: torch.Tensor, keep: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Move each row's kept items to the front (order preserved), zeros after them.

    Vectorised: a stable sort of the dropped flag puts kept positions first in their order.

    Args:
        items: (B, L) item ids.
        keep: (B, L) 0/1 keep mask; it must be 0 on padding.

    Returns:
        compacted: (B, L) kept ids left-aligned, 0 after ``lengths``.
        lengths: (B,) number of kept items n'.
        order: (B, L) source position of every compacted slot (gather it from any (B, L, ...)
            tensor aligned with ``items``, e.g. the keep values to pass their gradient on).
    """
    kept = keep.detach() > 0.5
    order = torch.sort((~kept).to(torch.int8), dim=1, stable=True).indices  # kept first
    lengths = kept.sum(1)
    valid = torch.arange(items.shape[1], device=items.device)[None, :] < lengths[:, None]
    compacted = torch.where(valid, items.gather(1, order), torch.zeros_like(items))
    return compacted, lengths, order


def ratio_keep(margin: torch.Tensor, mask: torch.Tensor, drop_ratio: float, tau: float,
               sample: bool = True) -> torch.Tensor:
    """(B, L) keep mask dropping the ``floor(drop_ratio * n)`` items of each row with the
    lowest keep margin, straight-through.

    Args:
        margin: (B, L) keep-minus-drop logit of every item.
        mask: (B, L) 1 on real items.
        drop_ratio: share of the n real items of a row dropped (rounded down).
        tau: temperature of the soft surrogate ``sigmoid((m - t) / tau)`` whose gradient the
            mask carries (t = midway between the last dropped and the first kept margin).
        sample: add logistic noise (the difference of two Gumbels, as the Gumbel gate) first.

    A fixed share per row pins the gate's level whatever the scorer's calibration. Exactly k
    items go even when margins tie (the older of tied items first).
    """
    if sample:
        uniform = torch.rand_like(margin).clamp(1e-6, 1 - 1e-6)
        margin = margin + torch.log(uniform) - torch.log1p(-uniform)
    real = mask > 0
    ranked, order = torch.sort(margin.masked_fill(~real, torch.inf), dim=1, stable=True)
    k = torch.floor(drop_ratio * real.sum(1)).long()  # (B,) dropped per row
    above = ranked.gather(1, k[:, None]).squeeze(1)  # lowest kept margin
    below = ranked.gather(1, (k - 1).clamp(min=0)[:, None]).squeeze(1)  # highest dropped
    threshold = torch.where(k > 0, (above + below) / 2, torch.full_like(above, -torch.inf))
    # by rank, not by the threshold: margins tied at it (saturated at the bound) would all go
    rank = torch.empty_like(order).scatter_(1, order, torch.arange(
        margin.shape[1], device=margin.device).expand_as(order))
    hard = (rank >= k[:, None]) & real
    soft = torch.sigmoid((margin - threshold[:, None]) / tau) * mask
    return hard.to(margin.dtype) + (soft - soft.detach())


def gate_keep(log_probs: torch.Tensor, mask: torch.Tensor, tau: float, sample: bool,
              drop_ratio: float | None) -> torch.Tensor:
    """(B, L) straight-through keep mask of a two-class (keep, drop) gate, 0 on padding.

    Args:
        log_probs: (B, L, 2) keep/drop log-probabilities (or logits).
        mask: (B, L) 1 on real items.
        tau: temperature of the straight-through surrogate.
        sample: add noise (training); without it the mask is deterministic.
        drop_ratio: a share of each row dropped, the lowest keep margins (:func:`ratio_keep`:
            the gate's level pinned, the denoisers' default), or None for a Gumbel choice per
            item (:func:`straight_through_gumbel`: the level follows the scorer).
    """
    if drop_ratio is not None:
        margin = log_probs[..., 0] - log_probs[..., 1]
        return ratio_keep(margin, mask, drop_ratio, tau, sample)
    return straight_through_gumbel(log_probs, tau, sample)[..., 0] * mask
