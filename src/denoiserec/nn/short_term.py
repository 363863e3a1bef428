"""Short-term interest: the last m items of a sequence read by Caser-style convolutions.

Caser (Tang & Wang, WSDM 2018, arXiv:1809.07426) treats the m x H matrix of the latest item
embeddings as an image: ``n_v`` vertical filters (m x 1) weight the m slots per dimension and
``n_h`` horizontal filters of every height h = 1..m (h x H) detect union-level patterns, max-
pooled over time; a fully connected layer maps both to H. MSDCCL uses it for its short-term
interest (without Caser's user embedding).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def last_items_window(items: torch.Tensor, lengths: torch.Tensor, m: int) -> torch.Tensor:
    """(B, m) the m most recent real items of each right-padded row, right-aligned (the latest
    in slot m - 1), left-padded with 0 when the row has fewer than m items. Vectorised gather:
    slot s holds position ``length - m + s`` when that is >= 0."""
    positions = (lengths - m)[:, None] + torch.arange(m, device=items.device)[None, :]  # (B, m)
    gathered = items.gather(1, positions.clamp(min=0))
    return torch.where(positions >= 0, gathered, torch.zeros_like(gathered))


class CaserConvolution(nn.Module):
    """Vertical + horizontal convolutions over an (m, H) window -> (B, H).

    ``v = conv_v(X)`` (no activation), ``h = [maxpool(relu(conv_h^k(X))) for k = 1..m]``,
    ``out = relu(W [v; h] + b)`` with dropout on ``[v; h]``.
    """

    def __init__(self, m: int, hidden: int, n_v: int, n_h: int, dropout: float) -> None:
        super().__init__()
        self.vertical = nn.Conv2d(1, n_v, (m, 1))
        self.horizontal = nn.ModuleList(nn.Conv2d(1, n_h, (h, hidden)) for h in range(1, m + 1))
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(n_v * hidden + n_h * m, hidden)

    def forward(self, window: torch.Tensor) -> torch.Tensor:
        """(B, m, H) window embeddings (zeros in empty slots) -> (B, H)."""
        image = window[:, None]  # (B, 1, m, H)
        vertical = self.vertical(image).flatten(1)  # (B, n_v * H)
        horizontal = [F.relu(conv(image).squeeze(3)).amax(2) for conv in self.horizontal]
        features = torch.cat([vertical, *horizontal], 1)  # (B, n_v * H + n_h * m)
        return F.relu(self.fc(self.dropout(features)))
