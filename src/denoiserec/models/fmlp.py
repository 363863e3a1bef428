"""FMLP-Rec: Filter-enhanced MLP (Zhou, Yu, Zhao, Wen, WWW 2022, arXiv:2202.13556).

Reference code: ``Woeee/FMLP-Rec`` (PyTorch). Embedding: item + learned position, LayerNorm,
dropout (Eq. 3); ``n_layers`` x (learnable complex filter in the frequency domain with residual
and LayerNorm, Eq. 5-7; point-wise feed-forward, Eq. 8-9), the shared block of
:mod:`denoiserec.nn.fft`; the last slot scored against the item embeddings (Eq. 10).

Departures: the batches are right-padded and cut to their longest row, the reference's are
left-padded to ``max_len``; the model left-aligns each batch to ``max_len`` slots first
(:func:`~denoiserec.nn.fft.left_align`), so the filters see the reference layout and a row's
scores depend on neither the batch width nor its padding. Training is the trainer's (CE over
all items by default; the reference uses BCE with one negative: ``train.loss=bpr``). The
filter mixes all slots circularly, future ones included, so all-position (window) training
would show the model its targets: prefix instances only. Optional behaviour embeddings
(``behaviour_embedding``) make it a multi-behaviour backbone (absent from the paper).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from denoiserec.config import check_choice, check_range
from denoiserec.data.batches import Batch
from denoiserec.models.base import SequentialRecommender
from denoiserec.models.behaviour import MAX_BEHAVIOURS, behaviour_ids
from denoiserec.models.registry import register
from denoiserec.nn.fft import FilterEncoder, left_align
from denoiserec.nn.transformer import ACTIVATIONS, init_bert_weights


@dataclass(frozen=True)
class FMLPRecConfig:
    """FMLP-Rec hyper-parameters (the reference's defaults)."""

    name: str = "fmlp"
    hidden_size: int = 64
    """Embedding and hidden size."""
    n_layers: int = 2
    """Filter blocks."""
    inner_size: int = 256
    """Feed-forward inner size (4 x hidden)."""
    hidden_dropout: float = 0.5
    """Dropout on embeddings, filter and feed-forward outputs (reference 0.5)."""
    hidden_act: str = "gelu"
    """Feed-forward activation: gelu | relu."""
    layer_norm_eps: float = 1e-12
    """LayerNorm epsilon."""
    initializer_range: float = 0.02
    """Std of the N(0, std) weight initialisation."""
    behaviour_embedding: bool = False
    """Add a learned behaviour embedding to every item (multi-behaviour logs)."""

    def __post_init__(self) -> None:
        check_choice("model.hidden_act", self.hidden_act, tuple(ACTIVATIONS))
        for key in ("hidden_size", "n_layers", "inner_size"):
            check_range(f"model.{key}", getattr(self, key), 1)
        check_range("model.hidden_dropout", self.hidden_dropout, 0, 1, high_open=True)
        check_range("model.layer_norm_eps", self.layer_norm_eps, 0, low_open=True)
        check_range("model.initializer_range", self.initializer_range, 0, low_open=True)


@register
class FMLPRec(SequentialRecommender):
    name = "fmlp"
    config_class = FMLPRecConfig
    causal = False
    window_training = ""
    window_refusal = ("FMLP-Rec's filters mix every slot, future ones included; all-position "
                      "training would show it its targets: use train.instances=prefix")

    def __init__(self, config: FMLPRecConfig, n_items: int, max_len: int) -> None:
        super().__init__(config, n_items, max_len)
        H = config.hidden_size
        self.item_embedding = nn.Embedding(n_items + 1, H, padding_idx=0)
        self.position_embedding = nn.Embedding(max_len, H)
        self.behaviour_embedding = (nn.Embedding(MAX_BEHAVIOURS, H, padding_idx=0)
                                    if config.behaviour_embedding else None)
        self.norm = nn.LayerNorm(H, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout)
        self.encoder = FilterEncoder(config.n_layers, max_len, H, config.inner_size,
                                     config.hidden_dropout, config.hidden_act,
                                     config.layer_norm_eps)
        std = config.initializer_range
        for module in (self.item_embedding, self.position_embedding, self.behaviour_embedding,
                       self.norm, *self.encoder.feed_forwards.modules()):
            if module is not None:
                init_bert_weights(module, std)

    def embed(self, batch: Batch) -> torch.Tensor:
        """(B, max_len, H) Eq. 3, left-aligned: LN(E + P) -> dropout."""
        x = self.item_embedding(batch.items)
        if self.behaviour_embedding is not None:
            x = x + self.behaviour_embedding(behaviour_ids(batch))
        x = left_align(x, batch.lengths, self.max_len)
        # as the reference, padding slots get their position embedding too
        return self.dropout(self.norm(x + self.position_embedding.weight[None]))

    def encode(self, batch: Batch) -> torch.Tensor:
        """(B, max_len, H), left-aligned: the last slot is the most recent item."""
        return self.encoder(self.embed(batch))

    def sequence_representation(self, batch: Batch) -> torch.Tensor:
        return self.encoder(self.embed(batch), last_slot=True)  # Eq. 10: the last slot

    def item_embeddings(self) -> torch.Tensor:
        return self.item_embedding.weight
