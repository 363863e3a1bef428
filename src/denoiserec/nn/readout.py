"""Clean/noise readout: two-class log-probabilities of every item given a user interest.

MSDCCL's ``AttnReadout`` (paper §4.3); a denoiser that scores items against an interest vector
reuses it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class CleanNoiseReadout(nn.Module):
    """§4.3: clean/noise log-probabilities of every item given the user interest u.

    ``x = Dropout(LN(e))``, ``k = W_k x``, ``logits = W_a [k; u; k - u; k * u]`` (2 classes,
    0 = clean), ``v = W_v x`` the values that the soft weights scale.
    """

    def __init__(self, hidden: int, dropout: float) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(hidden)
        self.dropout = nn.Dropout(dropout)
        self.key = nn.Linear(hidden, hidden, bias=False)  # W_k
        self.value = nn.Linear(hidden, hidden, bias=False)  # W_v
        self.score = nn.Linear(4 * hidden, 2, bias=False)  # W_a

    def forward(self, embeddings: torch.Tensor, interest: torch.Tensor,
                mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, L, H) item embeddings, (B, H) u, (B, L, 1) mask -> (B, L, 2) log-probabilities
        and (B, L, H) values."""
        x = self.dropout(self.norm(embeddings) * mask) * mask
        key = self.key(x) * mask
        u = interest[:, None, :].expand_as(key)
        logits = self.score(torch.cat([key, u, key - u, key * u], -1)) * mask  # (B, L, 2)
        return F.log_softmax(logits, -1), self.value(x) * mask
