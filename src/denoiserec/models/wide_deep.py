"""Wide & Deep (Cheng et al., DLRS 2016), as an ATJT base CTR model.

The ATJT code imports ``compare/wide_deep.py`` but never published it (``docs/specs/atjt.md``
§0, §5.1); this follows the paper and the spec's recommendation: the history slots and the
candidate are sparse fields (``max_len`` + 1; the code's 41 also had the user and the
categories) of one shared ``embedding_size``-wide item table; the deep part is a ReLU MLP
(``hidden_sizes``, the ATJT paper's (256, 128)) over the stacked field embeddings -> 1; the
wide part is the one-hot linear model: a bias, one weight per history item (summed over the
history, a multi-hot field) and one per candidate item. Click log-odds = wide + deep.
No user-id field (``models/ctr.py``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from denoiserec.config import check_range
from denoiserec.data.batches import Batch
from denoiserec.models.ctr import CTRModel
from denoiserec.models.dcn import check_sizes, field_inputs, mlp
from denoiserec.models.registry import register


@dataclass(frozen=True)
class WideDeepConfig:
    """Wide & Deep hyper-parameters (ATJT paper; spec §5.1 recommendation)."""

    name: str = "wide_deep"
    embedding_size: int = 8
    """Width of every field's embedding (spec: 8)."""
    hidden_sizes: tuple[int, ...] = (256, 128)
    """Deep part's widths (ATJT paper: (256, 128))."""

    def __post_init__(self) -> None:
        check_range("model.embedding_size", self.embedding_size, 1)
        check_sizes(self.hidden_sizes)


@register
class WideDeep(CTRModel):
    name = "wide_deep"
    config_class = WideDeepConfig

    def __init__(self, config: WideDeepConfig, n_items: int, max_len: int) -> None:
        super().__init__(config, n_items, max_len)
        width = (max_len + 1) * config.embedding_size
        self.item_embedding = nn.Embedding(n_items + 1, config.embedding_size, padding_idx=0)
        self.wide_history = nn.Embedding(n_items + 1, 1, padding_idx=0)
        self.wide_target = nn.Embedding(n_items + 1, 1, padding_idx=0)
        self.wide_bias = nn.Parameter(torch.zeros(1))
        self.deep = nn.Sequential(mlp((width, *config.hidden_sizes)),
                                  nn.Linear(config.hidden_sizes[-1], 1))
        for table in (self.item_embedding, self.wide_history, self.wide_target):
            nn.init.xavier_uniform_(table.weight)
            with torch.no_grad():
                table.weight[0].zero_()

    def logits(self, batch: Batch, candidates: torch.Tensor) -> torch.Tensor:
        x0 = field_inputs(self.item_embedding, batch, candidates, self.max_len)
        wide = (self.wide_bias + self.wide_history(batch.items).sum(1)  # (B, 1)
                + self.wide_target(candidates).squeeze(-1))  # (B, C)
        return wide + self.deep(x0).squeeze(-1)
