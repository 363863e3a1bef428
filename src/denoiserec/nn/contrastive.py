"""Contrastive losses shared by the denoisers (MSDCCL, MGSD-WSS).

:func:`cross_signal_contrastive` is MSDCCL's cross-signal loss (msdccl spec §3.3), a
SupCon-style InfoNCE between one anchor per sequence (the soft-denoised user representation)
and the sequence's own items, with the items a hard gate *kept* as positives and the items it
*dropped* as negatives::

    c_i = cos(e_i, anchor),  X_i = exp(c_i / tau)
    loss = -(1 / |P|) sum_{i in P} log( X_i / (X_i + sum_{j in N} X_j) )

P = kept real items, N = dropped real items; the loss of a row is 0 when N is empty. The keep
mask enters multiplicatively (weights of the negatives and of the positives' average), so a
straight-through keep mask passes gradient to the gate that produced it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

MAX_EXPONENT = 80.0  # exp(80) * L stays finite in float32 even at tiny temperatures


def noise_weighted_contrastive(anchor: torch.Tensor, candidates: torch.Tensor,
                               positive: torch.Tensor, mask: torch.Tensor, tau: float,
                               positive_weights: torch.Tensor | None = None,
                               negative_weights: torch.Tensor | None = None) -> torch.Tensor:
    """Per-row InfoNCE between an anchor and the row's candidates, each term weighted::

        loss = -(1 / |P|) sum_{i in P} log( a_i X_i / (a_i X_i + sum_{j in N} b_j X_j) )

    with ``X_i = exp(cos(c_i, anchor) / tau)``, P = positive real candidates, N = the other real
    candidates, ``a`` the positive and ``b`` the negative weights (1 when None). MGSD-WSS's
    item- and interest-level losses (mgsd-wss spec §4.3-4.4: a = the clean probability,
    b = 1 - a); with a = b = 1 MSDCCL's cross-signal loss.

    Args:
        anchor: (B, D); candidates: (B, L, D).
        positive: (B, L) 0/1 positives; may carry a straight-through gradient.
        mask: (B, L) 1 on real candidates.
        tau: temperature (> 0).
        positive_weights, negative_weights: (B, L) non-negative weights, or None.

    Returns:
        (B,) loss of every row (0 for a row without negatives).
    """
    mask = mask.to(candidates.dtype)
    positive = positive * mask
    negative = (1.0 - positive) * mask
    if negative_weights is not None:
        negative = negative * negative_weights
    cos = F.cosine_similarity(candidates, anchor[:, None, :], dim=-1) / tau  # (B, L)
    # log(a_i X_i / (a_i X_i + S)) = -softplus(log S - log a_i - c_i), S = sum_N b_j X_j, all
    # shifted by the row maximum so that exp never sees more than 2 / tau
    top = cos.masked_fill(mask == 0, -torch.inf).amax(1, keepdim=True).detach()  # (B, 1)
    shifted = torch.where(mask > 0, cos - top, torch.zeros_like(cos)).clamp(min=-MAX_EXPONENT)
    negatives = (negative * torch.exp(shifted)).sum(1, keepdim=True)  # (B, 1)
    tiny = torch.finfo(cos.dtype).tiny
    log_ratio = torch.log(negatives.clamp(min=tiny)) - shifted
    if positive_weights is not None:
        log_ratio = log_ratio - torch.log(positive_weights.clamp(min=tiny))
    per_item = torch.where(negatives > 0, F.softplus(log_ratio), torch.zeros_like(log_ratio))
    return (positive * per_item).sum(1) / positive.sum(1).clamp(min=1.0)


def cross_signal_contrastive(anchor: torch.Tensor, candidates: torch.Tensor,
                             keep: torch.Tensor, mask: torch.Tensor,
                             tau: float) -> torch.Tensor:
    """MSDCCL's per-row cross-signal InfoNCE (unweighted :func:`noise_weighted_contrastive`).

    Args:
        anchor: (B, D) one representation per row.
        candidates: (B, L, D) the row's item embeddings.
        keep: (B, L) 0/1 keep mask (positives); may carry a straight-through gradient.
        mask: (B, L) 1 on real items, 0 on padding.
        tau: temperature (> 0).

    Returns:
        (B,) loss of every row (0 for rows with no dropped item).
    """
    return noise_weighted_contrastive(anchor, candidates, keep, mask, tau)
