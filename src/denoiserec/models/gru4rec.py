"""GRU4Rec: session-based recommendations with recurrent neural networks.

Hidasi et al., ICLR 2016 (arXiv:1511.06939); reference code hidasib/GRU4Rec (Theano). Defaults
and training follow RecBole 1.2.1's ``GRU4Rec``: item embeddings (64, dropout 0.3) -> one GRU
layer (128, no bias) -> dense 128 -> 64, scored against the item embeddings, cross-entropy on the
last position of every prefix. Differences from the paper, as in RecBole: no session-parallel
mini-batches and no one-hot input; the paper's TOP1/BPR ranking losses are replaced by
cross-entropy (``train.loss=bpr`` is available).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from denoiserec.config import check_range
from denoiserec.data.batches import Batch
from denoiserec.models.base import SequentialRecommender
from denoiserec.models.registry import register
from denoiserec.nn.encoders import GRUBackbone


@dataclass(frozen=True)
class GRU4RecConfig:
    """GRU4Rec hyper-parameters (RecBole 1.2.1 defaults)."""

    name: str = "gru4rec"
    embedding_size: int = 64
    """Item embedding size."""
    hidden_size: int = 128
    """GRU hidden size."""
    num_layers: int = 1
    """Stacked GRU layers."""
    dropout: float = 0.3
    """Dropout on the input embeddings."""

    def __post_init__(self) -> None:
        for key in ("embedding_size", "hidden_size", "num_layers"):
            check_range(f"model.{key}", getattr(self, key), 1)
        check_range("model.dropout", self.dropout, 0, 1, high_open=True)


@register
class GRU4Rec(SequentialRecommender):
    name = "gru4rec"
    config_class = GRU4RecConfig
    causal = True

    @classmethod
    def build_encoder(cls, config: GRU4RecConfig, max_len: int) -> GRUBackbone:
        return GRUBackbone(config.embedding_size, config.hidden_size, config.num_layers,
                           config.dropout)

    @classmethod
    def embedding_size(cls, config: GRU4RecConfig) -> int:
        return config.embedding_size

    def __init__(self, config: GRU4RecConfig, n_items: int, max_len: int) -> None:
        super().__init__(config, n_items, max_len)
        self.item_embedding = nn.Embedding(n_items + 1, config.embedding_size, padding_idx=0)
        self.backbone = self.build_encoder(config, max_len)
        nn.init.xavier_normal_(self.item_embedding.weight)  # RecBole's initialisation
        self.backbone.reset_parameters()

    def encode(self, batch: Batch) -> torch.Tensor:
        # §3.1; the GRU of Eq. 1-4
        return self.backbone(self.item_embedding(batch.items), batch.items)

    def item_embeddings(self) -> torch.Tensor:
        return self.item_embedding.weight
