"""DCN: Deep & Cross Network (Wang et al., ADKDD 2017), as an ATJT base CTR model.

The ATJT code imports ``compare/DCN.py`` but never published it (``docs/specs/atjt.md`` §0,
§5.2); this follows the paper and the spec's recommendation: every history slot and the
candidate are sparse fields (``max_len`` + 1 fields; the code's 41 also had the user and the
categories), each an ``embedding_size``-wide embedding from one shared item table, stacked into
x0; ``n_cross`` cross layers x_{l+1} = x0 (x_l . w_l) + b_l + x_l beside a ReLU MLP
(``hidden_sizes``, the paper's (128, 128)); [x_L; deep] -> Linear -> click log-odds.
No user-id field (``models/ctr.py``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from denoiserec.config import check_range
from denoiserec.data.batches import Batch
from denoiserec.errors import ConfigError
from denoiserec.models.ctr import CTRModel, padded_history
from denoiserec.models.registry import register


def check_sizes(sizes: tuple[int, ...]) -> None:
    """Hidden widths: a non-empty list of positive numbers."""
    if not sizes or min(sizes) < 1:
        raise ConfigError("model.hidden_sizes must be a non-empty list of positive widths; "
                          f"got {list(sizes)}")


def mlp(sizes: tuple[int, ...]) -> nn.Sequential:
    """Linear + ReLU over consecutive ``sizes``."""
    layers: list[nn.Module] = []
    for i, o in zip(sizes[:-1], sizes[1:], strict=True):
        layers += [nn.Linear(i, o), nn.ReLU()]
    return nn.Sequential(*layers)


def field_inputs(embedding: nn.Embedding, batch: Batch, candidates: torch.Tensor,
                 max_len: int) -> torch.Tensor:
    """(B, C, (max_len + 1) e) the stacked field embeddings: history slots, then candidate."""
    history = embedding(padded_history(batch, max_len)).flatten(1)  # (B, max_len e)
    target = embedding(candidates)  # (B, C, e)
    return torch.cat([history[:, None, :].expand(-1, candidates.shape[1], -1), target], -1)


@dataclass(frozen=True)
class DCNConfig:
    """DCN hyper-parameters (paper; spec §5.2 recommendation)."""

    name: str = "dcn"
    embedding_size: int = 8
    """Width of every field's embedding (spec: 8)."""
    n_cross: int = 2
    """Cross layers (unknown in the code; spec: 2)."""
    hidden_sizes: tuple[int, ...] = (128, 128)
    """Deep part's widths (ATJT paper: (128, 128))."""

    def __post_init__(self) -> None:
        check_range("model.embedding_size", self.embedding_size, 1)
        check_range("model.n_cross", self.n_cross, 1)
        check_sizes(self.hidden_sizes)


@register
class DCN(CTRModel):
    name = "dcn"
    config_class = DCNConfig

    def __init__(self, config: DCNConfig, n_items: int, max_len: int) -> None:
        super().__init__(config, n_items, max_len)
        width = (max_len + 1) * config.embedding_size
        self.item_embedding = nn.Embedding(n_items + 1, config.embedding_size, padding_idx=0)
        self.cross_weight = nn.Parameter(torch.empty(config.n_cross, width))
        self.cross_bias = nn.Parameter(torch.zeros(config.n_cross, width))
        self.deep = mlp((width, *config.hidden_sizes))
        self.output = nn.Linear(width + config.hidden_sizes[-1], 1)
        nn.init.xavier_uniform_(self.item_embedding.weight)
        nn.init.xavier_uniform_(self.cross_weight)
        with torch.no_grad():
            self.item_embedding.weight[0].zero_()

    def logits(self, batch: Batch, candidates: torch.Tensor) -> torch.Tensor:
        x0 = field_inputs(self.item_embedding, batch, candidates, self.max_len)
        x = x0
        for w, b in zip(self.cross_weight, self.cross_bias, strict=True):
            x = x0 * (x @ w)[..., None] + b + x
        return self.output(torch.cat([x, self.deep(x0)], dim=-1)).squeeze(-1)
