"""ATJT's noise-recognition model and its settings (spec §3.1, §4.3).

The training procedure that uses them -- artificial noise, groups, the joint loss -- is
:mod:`denoiserec.train.atjt`; this module holds only what a reader needs to know *what* g is
and how it is configured.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from denoiserec.config import check_choice, check_range
from denoiserec.data.batches import Batch
from denoiserec.errors import ConfigError

REWEIGHTS = ("none", "atjt")
VARIANTS = ("atjt", "wat", "dnr")


@dataclass(frozen=True)
class ATJTConfig:
    """ATJT's settings (``train.atjt.*``; used with ``train.reweight=atjt``; spec §4.3)."""

    variant: str = "atjt"
    """``atjt`` (joint: L_R + alpha L_D, w not detached) | ``wat`` (no auxiliary task:
    L_R - wat_l2 mean w^2) | ``dnr`` (w detached: g learns from L_D only) (spec §4.4)."""
    groups: int = 2
    """N: user groups, one noise model each (spec §1.5: 2)."""
    alpha: float = 100.0
    """alpha: weight of L_D (the code's hard-coded 100; not in the paper)."""
    noise_share: float = 0.5
    """Share of each noise batch whose rows get items replaced (code: 1/k = 0.5, Fig. 4)."""
    replaced: int = 1
    """Items replaced per corrupted row (Table 3: 1 best)."""
    lr: float = 0.023
    """Adagrad learning rate of the noise models (code: 0.023 for g1, 0.025 for g2)."""
    weight_decay: float = 5e-4
    """Adagrad weight decay of the noise models (code: 5e-4)."""
    wat_l2: float = 0.04
    """``wat`` only: weight of the -mean(w^2) term that keeps weights from collapsing."""
    warmup_epochs: int = 0
    """Epochs in which the recommender trains unweighted while g learns L_D (0 = code)."""
    item_embedding_size: int = 16
    """Width of a position's embedding (code: item 8 + category 8)."""
    user_embedding_size: int = 8
    """Width of the user embedding."""
    attention_size: int = 32
    """Hidden width of the attention MLP (4 d -> this -> 1)."""
    hidden_sizes: tuple[int, ...] = (256, 64)
    """Hidden widths of the output MLP ((user + 2 d) -> ... -> 1)."""
    dropout: float = 0.5
    """Dropout after the attention MLP's first layer (the only one in the code)."""

    def __post_init__(self) -> None:
        check_choice("train.atjt.variant", self.variant, VARIANTS)
        check_range("train.atjt.groups", self.groups, 2)
        check_range("train.atjt.alpha", self.alpha, 0)
        check_range("train.atjt.noise_share", self.noise_share, 0, 1, low_open=True,
                    high_open=True)
        check_range("train.atjt.lr", self.lr, 0, low_open=True)
        for key in ("weight_decay", "wat_l2", "warmup_epochs"):
            check_range(f"train.atjt.{key}", getattr(self, key), 0)
        for key in ("replaced", "item_embedding_size", "user_embedding_size", "attention_size"):
            check_range(f"train.atjt.{key}", getattr(self, key), 1)
        check_range("train.atjt.dropout", self.dropout, 0, 1, high_open=True)
        if not self.hidden_sizes or min(self.hidden_sizes) < 1:
            raise ConfigError("train.atjt.hidden_sizes must be a non-empty list of positive "
                              f"widths; got {list(self.hidden_sizes)}")


def check_reweight(reweight: str, atjt: ATJTConfig) -> None:
    """``train.reweight`` is known, and ``train.atjt.*`` is only set when it is ``atjt``."""
    check_choice("train.reweight", reweight, REWEIGHTS)
    if reweight != "atjt" and atjt != ATJTConfig():
        raise ConfigError("train.atjt.* settings need train.reweight=atjt")


def check_replaced(reweight: str, atjt: ATJTConfig, max_len: int) -> None:
    """A corrupted row cannot have more items replaced than a history holds (``corrupt``
    would clamp ``replaced`` to ``max_len`` without a word)."""
    if reweight == "atjt" and atjt.replaced > max_len:
        raise ConfigError(f"train.atjt.replaced ({atjt.replaced}) is more than a history "
                          f"holds (data.max_len {max_len}); lower it")


# -- §3.1 the noise-recognition model ---------------------------------------------------------
class AtjtNoiseModel(nn.Module):
    """g(x; Theta_D): P(original) of a sequence (history, query item, user) (spec §3.1).

    a_n = W2 PReLU(Dropout(W1 [e_n; e_T; e_n - e_T; e_n * e_T])) per history position,
    h = sum_n m_n a_n e_n (SUM pooling of raw, unnormalised scores, as the code; the paper
    normalises), w = sigmoid(MLP([e_u; h; e_T])); one scalar PReLU shared by every activation.
    """

    def __init__(self, config: ATJTConfig, n_items: int, n_users: int) -> None:
        super().__init__()
        d, du = config.item_embedding_size, config.user_embedding_size
        self.item_embedding = nn.Embedding(n_items + 1, d, padding_idx=0)
        self.user_embedding = nn.Embedding(max(n_users, 1), du)
        self.attention_in = nn.Linear(4 * d, config.attention_size)
        self.attention_dropout = nn.Dropout(config.dropout)
        self.attention_out = nn.Linear(config.attention_size, 1)
        sizes = (du + 2 * d, *config.hidden_sizes, 1)
        self.output_layers = nn.ModuleList(
            nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:], strict=True))
        self.prelu = nn.PReLU()  # one slope for every activation (spec §3.1, §7.4)
        for module in self.modules():  # xavier on weights, default biases (spec §3.1)
            if isinstance(module, (nn.Linear, nn.Embedding)):
                nn.init.xavier_uniform_(module.weight)
        with torch.no_grad():
            self.item_embedding.weight[0].zero_()  # padding: a zero query when there is none

    def forward(self, items: torch.Tensor, lengths: torch.Tensor, query: torch.Tensor,
                users: torch.Tensor) -> torch.Tensor:
        """(B,) logits of P(original) for (B, L) right-padded ``items``, (B,) ``query``."""
        history = self.item_embedding(items)  # (B, L, d)
        target = self.item_embedding(query)  # (B, d)
        t = target[:, None, :].expand_as(history)
        z = torch.cat([history, t, history - t, history * t], dim=-1)  # (B, L, 4d)
        scores = self.attention_out(self.prelu(self.attention_dropout(self.attention_in(z))))
        real = torch.arange(items.shape[1], device=items.device)[None, :] < lengths[:, None]
        pooled = (scores * history * real[..., None]).sum(1)  # (B, d), unnormalised SUM
        x = torch.cat([self.user_embedding(users), pooled, target], dim=-1)  # (B, du + 2d)
        for index, layer in enumerate(self.output_layers):
            x = layer(x)
            if index < len(self.output_layers) - 1:
                x = self.prelu(x)
        return x.squeeze(-1)


def query_items(batch: Batch) -> torch.Tensor:
    """(B,) the item g judges a row against: its target, or its last target in window mode
    (0 = none for Cloze windows, which carry no targets)."""
    if batch.instances == "prefix":
        return batch.targets
    return batch.targets.gather(1, (batch.lengths - 1).clamp(min=0)[:, None]).squeeze(1)
