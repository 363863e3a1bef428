"""SASRec: Self-Attentive Sequential Recommendation (Kang & McAuley, ICDM 2018, arXiv:1808.09781).

Reference code: kang205/SASRec (TensorFlow); defaults and training follow RecBole 1.2.1's
``SASRec`` (docs/protocols/recbole.md §2.6), the version the denoising papers compare with.

Differences from the paper, as in RecBole: post-LayerNorm Transformer blocks with GELU and a
linear feed-forward layer (the paper uses pre-LN, ReLU and 1x1 convolutions); cross-entropy over
all items on the last position of every prefix instead of BCE with one negative on every
position (``train.instances=window`` gives all positions; ``train.loss=bpr`` sampled negatives).
Output embeddings are the input item embeddings (shared).

``behaviour_embedding=true`` (absent from the paper; the multi-behaviour backbone of END4Rec's
comparison, issue 17 / END4Rec spec §2.1): a learned behaviour vector is added to the item
embedding of every input position (padding 0), before positions, LayerNorm and dropout. Off,
the model and its random draws are exactly as before.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from denoiserec.data.batches import Batch
from denoiserec.models.base import SequentialRecommender
from denoiserec.models.behaviour import behaviour_ids, behaviour_table
from denoiserec.models.registry import register
from denoiserec.nn.encoders import TransformerBackbone
from denoiserec.nn.transformer import check_transformer_settings, init_bert_weights


@dataclass(frozen=True)
class SASRecConfig:
    """SASRec hyper-parameters (RecBole 1.2.1 defaults)."""

    name: str = "sasrec"
    n_layers: int = 2
    """Transformer blocks (paper: b)."""
    n_heads: int = 2
    """Attention heads."""
    hidden_size: int = 64
    """Embedding and hidden size (paper: d)."""
    inner_size: int = 256
    """Feed-forward inner size."""
    hidden_dropout: float = 0.5
    """Dropout on embeddings and block outputs (RecBole default 0.5)."""
    attn_dropout: float = 0.5
    """Dropout on attention probabilities."""
    hidden_act: str = "gelu"
    """Feed-forward activation: gelu | relu."""
    layer_norm_eps: float = 1e-12
    """LayerNorm epsilon."""
    initializer_range: float = 0.02
    """Std of the N(0, std) weight initialisation."""
    behaviour_embedding: bool = False
    """Add a learned behaviour embedding to every input item (multi-behaviour logs)."""

    def __post_init__(self) -> None:
        check_transformer_settings(self)


@register
class SASRec(SequentialRecommender):
    name = "sasrec"
    config_class = SASRecConfig
    causal = True

    @classmethod
    def build_encoder(cls, config: SASRecConfig, max_len: int) -> TransformerBackbone:
        return TransformerBackbone(config.hidden_size, max_len, config.n_layers, config.n_heads,
                                   config.inner_size, config.hidden_dropout, config.attn_dropout,
                                   config.hidden_act, config.layer_norm_eps,
                                   config.initializer_range, causal=True)

    def __init__(self, config: SASRecConfig, n_items: int, max_len: int) -> None:
        super().__init__(config, n_items, max_len)
        self.item_embedding = nn.Embedding(n_items + 1, config.hidden_size, padding_idx=0)
        self.backbone = self.build_encoder(config, max_len)
        init_bert_weights(self.item_embedding, config.initializer_range)
        self.backbone.reset_parameters()
        # drawn after everything else: with the option off the random draws are unchanged
        self.behaviour_embedding = (behaviour_table(config.hidden_size,
                                                    config.initializer_range)
                                    if config.behaviour_embedding else None)

    def embed(self, batch: Batch) -> torch.Tensor:
        """(B, L, H) input embeddings: item (+ behaviour, padding 0) vectors."""
        x = self.item_embedding(batch.items)
        if self.behaviour_embedding is not None:
            x = x + self.behaviour_embedding(behaviour_ids(batch))
        return x

    def encode(self, batch: Batch) -> torch.Tensor:
        return self.backbone(self.embed(batch), batch.items)  # Eq. 1-6

    def sequence_representation(self, batch: Batch) -> torch.Tensor:
        # the last block only at position length - 1: the same values as encode() + gather
        return self.backbone(self.embed(batch), batch.items, batch.lengths - 1)

    def item_embeddings(self) -> torch.Tensor:
        return self.item_embedding.weight  # Eq. 7: shared input and output item embeddings
