"""Contrastive losses shared by the denoisers.

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


def cross_signal_contrastive(anchor: torch.Tensor, candidates: torch.Tensor,
                             keep: torch.Tensor, mask: torch.Tensor,
                             tau: float) -> torch.Tensor:
    """Per-row cross-signal InfoNCE.

    Args:
        anchor: (B, D) one representation per row.
        candidates: (B, L, D) the row's item embeddings.
        keep: (B, L) 0/1 keep mask (positives); may carry a straight-through gradient.
        mask: (B, L) 1 on real items, 0 on padding.
        tau: temperature (> 0).

    Returns:
        (B,) loss of every row (0 for rows with no dropped item).
    """
    mask = mask.to(candidates.dtype)
    keep = keep * mask
    drop = (1.0 - keep) * mask  # negatives
    cos = F.cosine_similarity(candidates, anchor[:, None, :], dim=-1) / tau  # (B, L)
    # log(X_i / (X_i + sum_N X_j)) = -log1p(sum_N exp(c_j - c_i)); shifted by the row maximum so
    # that exp never sees more than 2 / tau, and exactly 0 when N is empty
    top = cos.masked_fill(mask == 0, -torch.inf).amax(1, keepdim=True).detach()  # (B, 1)
    shifted = torch.where(mask > 0, cos - top, torch.zeros_like(cos))  # <= 0 on real items
    negatives = (drop * torch.exp(shifted)).sum(1, keepdim=True)  # (B, 1)
    ratio = negatives * torch.exp((-shifted).clamp(max=MAX_EXPONENT))  # (B, L)
    log_likelihood = -torch.log1p(ratio)  # (B, L)
    n_positive = keep.sum(1).clamp(min=1.0)
    return -(keep * log_likelihood).sum(1) / n_positive
