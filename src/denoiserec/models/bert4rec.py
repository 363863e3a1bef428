"""BERT4Rec: sequential recommendation with bidirectional encoder representations from Transformer.

Sun et al., CIKM 2019 (arXiv:1904.06690); reference code FeiSun/BERT4Rec (TensorFlow). Defaults
and training follow RecBole 1.2.1's ``BERT4Rec`` and its ``MaskItemSequence`` transform
(docs/protocols/recbole.md §2.4): the instance's target is ignored; per batch, with
probability ``ft_ratio`` the last input item is replaced by the mask token and predicted,
otherwise every input item is masked with probability ``mask_ratio`` (Cloze, paper §3.6) and
at most ``int(mask_ratio * max_len)`` of the latest masked positions carry the loss.
Cross-entropy over all items plus an output bias. At test time the mask token is appended after
the last item and predicted.

Differences from RecBole 1.2.1, where RecBole departs from the paper's intent:

* RecBole pads the list of masked positions with 0 and then drops index 0 from the loss, so a
  masked *first* item is hidden from the input but never predicted; we predict it.
* RecBole's test-time append shifts every sequence left by one, dropping the oldest item even
  when the sequence is shorter than ``max_len``; we only drop it when the window is full.
* Masking is vectorised (RecBole loops in Python over items, with a per-item negative draw).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from denoiserec.config import check_range
from denoiserec.data.batches import Batch
from denoiserec.models.base import (
    ModelOutput,
    SequentialRecommender,
    row_shares,
)
from denoiserec.models.registry import register
from denoiserec.nn.encoders import TransformerBackbone
from denoiserec.nn.losses import Objective
from denoiserec.nn.schedules import TrainingProgress
from denoiserec.nn.transformer import check_transformer_settings, init_bert_weights


@dataclass(frozen=True)
class BERT4RecConfig:
    """BERT4Rec hyper-parameters (RecBole 1.2.1 defaults)."""

    name: str = "bert4rec"
    n_layers: int = 2
    """Transformer blocks."""
    n_heads: int = 2
    """Attention heads."""
    hidden_size: int = 64
    """Embedding and hidden size."""
    inner_size: int = 256
    """Feed-forward inner size."""
    hidden_dropout: float = 0.2
    """Dropout on embeddings and block outputs."""
    attn_dropout: float = 0.2
    """Dropout on attention probabilities."""
    hidden_act: str = "gelu"
    """Feed-forward activation."""
    layer_norm_eps: float = 1e-12
    """LayerNorm epsilon."""
    initializer_range: float = 0.02
    """Std of the N(0, std) initialisation."""
    mask_ratio: float = 0.2
    """Cloze masking probability per item (paper: rho)."""
    ft_ratio: float = 0.5
    """Probability that a batch masks only the last item (RecBole's fine-tuning samples)."""

    def __post_init__(self) -> None:
        check_transformer_settings(self)
        check_range("model.mask_ratio", self.mask_ratio, 0, 1, low_open=True)
        check_range("model.ft_ratio", self.ft_ratio, 0, 1)


class ClozeMask(NamedTuple):
    """Which input items a Cloze batch hides and predicts.

    Attributes:
        masked: (B, L) True where the input item is replaced by the mask token.
        predicted: (B, L) True where the loss is computed (a subset of ``masked``).
        last_only: True for a fine-tuning batch (only each row's last item masked).
    """

    masked: torch.Tensor
    predicted: torch.Tensor
    last_only: bool


def cloze_mask(items: torch.Tensor, lengths: torch.Tensor, mask_ratio: float, ft_ratio: float,
               max_predictions: int) -> ClozeMask:
    """RecBole's MaskItemSequence, vectorised."""
    B, L = items.shape
    positions = torch.arange(L, device=items.device)[None, :]
    if torch.rand(()) < ft_ratio:  # one draw per batch
        masked = positions == (lengths - 1)[:, None]
        return ClozeMask(masked, masked, last_only=True)
    masked = (torch.rand(B, L, device=items.device) < mask_ratio) & (items != 0)
    from_end = masked.flip(1).cumsum(1).flip(1)  # masked positions at or after each position
    return ClozeMask(masked, masked & (from_end <= max_predictions), last_only=False)


@register
class BERT4Rec(SequentialRecommender):
    name = "bert4rec"
    config_class = BERT4RecConfig
    causal = False
    window_training = "cloze"  # the paper's own training: masked items of whole sequences
    losses = ("ce",)  # the Cloze softmax over every item
    label_smoothing = False

    @classmethod
    def build_encoder(cls, config: BERT4RecConfig, max_len: int) -> TransformerBackbone:
        return TransformerBackbone(config.hidden_size, max_len, config.n_layers, config.n_heads,
                                   config.inner_size, config.hidden_dropout, config.attn_dropout,
                                   config.hidden_act, config.layer_norm_eps,
                                   config.initializer_range, causal=False)  # bidirectional

    def __init__(self, config: BERT4RecConfig, n_items: int, max_len: int) -> None:
        super().__init__(config, n_items, max_len)
        H = config.hidden_size
        self.mask_token = n_items + 1
        self.item_embedding = nn.Embedding(n_items + 2, H, padding_idx=0)  # + mask token
        self.backbone = self.build_encoder(config, max_len)
        self.output_ffn = nn.Linear(H, H)  # output layer (§3.5, Eq. 7): GELU, LayerNorm, bias
        self.output_norm = nn.LayerNorm(H, eps=config.layer_norm_eps)
        self.output_bias = nn.Parameter(torch.zeros(n_items + 1))
        self.max_predictions = int(config.mask_ratio * max_len)
        init_bert_weights(self.item_embedding, config.initializer_range)
        self.backbone.reset_parameters()
        for module in (self.output_ffn, self.output_norm):
            init_bert_weights(module, config.initializer_range)

    def _encode_items(self, items: torch.Tensor,
                      query: torch.Tensor | None = None) -> torch.Tensor:
        """(B, L, H), or (B, H) at positions ``query`` (B,) (the last block only there)."""
        x = self.backbone(self.item_embedding(items), items, query)  # §3.3-3.4
        return self.output_norm(F.gelu(self.output_ffn(x)))  # Eq. 7

    def encode(self, batch: Batch) -> torch.Tensor:
        return self._encode_items(batch.items)

    def item_embeddings(self) -> torch.Tensor:
        return self.item_embedding.weight[: self.n_items + 1]  # without the mask token

    def loss(self, batch: Batch, objective: Objective,
             progress: TrainingProgress) -> ModelOutput:
        masked, predicted, last_only = cloze_mask(
            batch.items, batch.lengths, self.config.mask_ratio, self.config.ft_ratio,
            self.max_predictions)
        inputs = batch.items.masked_fill(masked, self.mask_token)
        labels = batch.items[predicted]  # (n,) row-major
        if last_only:  # one read per row: the last block at the last item only
            hidden = self._encode_items(inputs, batch.lengths - 1)[:, None]  # (B, 1, H)
            predicted = predicted.gather(1, (batch.lengths - 1)[:, None])
        else:
            hidden = self._encode_items(inputs)
        logits = hidden[predicted] @ self.item_embeddings().T + self.output_bias  # (n, items)
        if logits.shape[0] == 0:  # nothing masked in this batch: no signal, zero loss
            loss = hidden.sum() * 0.0
            per_sample = hidden.sum((1, 2)) * 0.0
        else:
            losses = F.cross_entropy(logits, labels, reduction="none",
                                     label_smoothing=objective.label_smoothing)  # (n,)
            loss = losses.mean()
            per_sample = row_shares(losses, predicted)  # a row's share of the Cloze mean
        return ModelOutput(loss=loss, parts={"cloze": float(loss.detach())},
                           per_sample=per_sample)

    def _with_mask_appended(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        items, lengths = batch.items, batch.lengths
        if items.shape[1] < self.max_len:  # room for the mask token after the longest row
            items = torch.nn.functional.pad(items, (0, 1))
        full = lengths >= self.max_len
        shifted = torch.where(full[:, None], items.roll(-1, dims=1), items)
        position = torch.where(full, lengths - 1, lengths)
        shifted = shifted.scatter(1, position[:, None], self.mask_token)
        return shifted, position + 1

    def sequence_representation(self, batch: Batch) -> torch.Tensor:
        items, lengths = self._with_mask_appended(batch)
        return self._encode_items(items, lengths - 1)  # at the mask token only

    def score_all(self, batch: Batch) -> torch.Tensor:
        return self.sequence_representation(batch) @ self.item_embeddings().T + self.output_bias
