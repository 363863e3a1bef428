"""Behaviour ids and the behaviour embedding of the multi-behaviour backbones.

END4Rec's behaviour-aware embedding (spec §2.1, Eq. 1) adds a behaviour vector to every input
item; FMLP-Rec and SASRec take the same option for the multi-behaviour comparison (issue 17).
Behaviour ids are shifted by one so that padding has its own row: 0 = padding, behaviour b of
the log -> b + 1 (the release's 0-based ids give the pad behaviour 0's vector, spec §6.1.12).
"""

from __future__ import annotations

import torch
from torch import nn

from denoiserec.data.batches import Batch

MAX_BEHAVIOURS = 8  # behaviour-embedding rows: 0 = padding, behaviour b -> b + 1


def behaviour_ids(batch: Batch) -> torch.Tensor:
    """(B, L) behaviour id + 1 on real items, 0 on padding (all real items 1 without
    behaviours), checked against ``MAX_BEHAVIOURS``."""
    real = batch.padding_mask
    if batch.behaviours is None:
        return real.long()
    ids = torch.where(real, batch.behaviours + 1, 0)
    if int(ids.max()) >= MAX_BEHAVIOURS:
        raise ValueError(f"at most {MAX_BEHAVIOURS - 1} behaviours are supported")
    return ids


def behaviour_table(hidden: int, std: float) -> nn.Embedding:
    """A (MAX_BEHAVIOURS, hidden) embedding, N(0, std) with a zero padding row 0 (padding
    adds nothing to its slot)."""
    table = nn.Embedding(MAX_BEHAVIOURS, hidden, padding_idx=0)
    with torch.no_grad():
        table.weight.normal_(0.0, std)
        table.weight[0].zero_()
    return table
