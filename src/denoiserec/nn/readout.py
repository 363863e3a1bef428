"""Clean/noise readout: two-class log-probabilities of every item given a user interest.

MSDCCL's ``AttnReadout`` (paper §4.3); a denoiser that scores items against an interest vector
reuses it (MGSD-WSS: its interest selector), and :func:`bounded_log_probs` bounds any two-class
noise head.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class CleanNoiseReadout(nn.Module):
    """§4.3: clean/noise log-probabilities of every item given the user interest u.

    ``x = Dropout(LN(e))``, ``k = W_k x``, ``logits = W_a [k; u; k - u; k * u]`` (2 classes,
    0 = clean), ``v = W_v x`` the values that the soft weights scale.

    With ``bound`` > 0 the clean-minus-noise margin is squashed to ``bound * tanh(m / bound)``
    (ours): the probabilities stay in [sigmoid(-bound), sigmoid(bound)], so neither class's
    log-probability can saturate to exactly 0 in float32 (the published scorer's did within ~10
    batches, which froze the soft weights at uniform). ``bound = 0`` is the published readout.
    """

    def __init__(self, hidden: int, dropout: float, bound: float = 0.0,
                 values: bool = True) -> None:
        super().__init__()
        self.bound = bound
        self.norm = nn.LayerNorm(hidden)
        self.dropout = nn.Dropout(dropout)
        self.key = nn.Linear(hidden, hidden, bias=False)  # W_k
        self.value = nn.Linear(hidden, hidden, bias=False) if values else None  # W_v
        self.score = nn.Linear(4 * hidden, 2, bias=False)  # W_a

    def forward(self, embeddings: torch.Tensor, interest: torch.Tensor,
                mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(B, L, H) item embeddings, (B, H) u, (B, L, 1) mask -> (B, L, 2) log-probabilities
        and (B, L, H) values (None when built without ``values``)."""
        x = self.dropout(self.norm(embeddings) * mask) * mask
        key = self.key(x) * mask
        u = interest[:, None, :].expand_as(key)
        logits = self.score(torch.cat([key, u, key - u, key * u], -1)) * mask  # (B, L, 2)
        values = None if self.value is None else self.value(x) * mask
        return bounded_log_probs(logits, self.bound), values


def bounded_log_probs(logits: torch.Tensor, bound: float) -> torch.Tensor:
    """(..., 2) clean/noise log-probabilities from (..., 2) logits, the clean-minus-noise
    margin squashed to ``bound * tanh(m / bound)`` first when ``bound`` > 0 (then neither
    log-probability can saturate to exactly 0 in float32)."""
    if bound > 0:
        margin = logits[..., 0] - logits[..., 1]
        margin = bound * torch.tanh(margin / bound)
        logits = torch.stack([margin, torch.zeros_like(margin)], -1)
    return F.log_softmax(logits, -1)
