"""DIN: Deep Interest Network (Zhou et al., KDD 2018), as ATJT's base CTR model.

Sizes and structure follow the ATJT code's ``compare/DIN.py`` (``docs/specs/atjt.md`` §5.3):
a position is a 16-wide embedding (the code's item 8 + category 8; our logs have no
categories); attention z_n = [e_n; e_T; e_n - e_T; e_n * e_T] (64) -> Linear(64, 32) -> Dice ->
Linear(32, 1), softmax over the real positions; pooled history (16) and the candidate (16) ->
Linear(32, 256) -> Dice -> Linear(256, 64) -> Dice -> Linear(64, 2); click log-odds = the
difference of the two outputs (the code's 2-way softmax). Xavier-uniform initialisation.

Departures (and the code's bugs, spec §5.3, §7):

* no user-id input (``models/ctr.py``): the MLP reads 32 features, not 40, so the dense
  parameter count is 27,139 (the code's 29,187 less 8 x 256);
* Dice (``nn/dice.py``): ``model.dice=proper`` (default: registered BatchNorm with running
  statistics, learned alpha) or ``atjt`` (the code: a fresh BatchNorm of the current batch's
  statistics and alpha = 0 on every call, also at test time). Padding positions enter no
  batch statistic in either mode (the code's attention BN counted them);
* the softmax subtracts the row maximum (the code's exp() without it can overflow); same values;
* the attention's first layer is applied as W1 e_n + W2 e_T + W3 (e_n - e_T) + W4 (e_n * e_T)
  with the history and candidate parts computed once per row and per candidate, not per
  (row, candidate, position): the same function, a fraction of the work;
* padding id 0 is reserved (the code's item 0 was both a real item and padding, spec §7.16).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from denoiserec.config import check_choice, check_range
from denoiserec.data.batches import Batch
from denoiserec.errors import ConfigError
from denoiserec.models.ctr import CTRModel
from denoiserec.models.registry import register
from denoiserec.nn.dice import DICE_MODES, Dice, masked_dice


@dataclass(frozen=True)
class DINConfig:
    """DIN hyper-parameters (ATJT code, spec §5.3)."""

    name: str = "din"
    embedding_size: int = 16
    """Width of an item embedding (code: item 8 + category 8)."""
    attention_size: int = 32
    """Hidden width of the attention unit (4 d -> this -> 1)."""
    hidden_sizes: tuple[int, ...] = (256, 64)
    """Hidden widths of the output MLP (2 d -> ... -> 2)."""
    dice: str = "proper"
    """``proper`` (learned Dice, running statistics) or ``atjt`` (the code's batch-statistics
    Dice with alpha = 0)."""

    def __post_init__(self) -> None:
        check_range("model.embedding_size", self.embedding_size, 1)
        check_range("model.attention_size", self.attention_size, 1)
        check_choice("model.dice", self.dice, DICE_MODES)
        if not self.hidden_sizes or min(self.hidden_sizes) < 1:
            raise ConfigError("model.hidden_sizes must be a non-empty list of positive widths; "
                              f"got {list(self.hidden_sizes)}")


@register
class DIN(CTRModel):
    name = "din"
    config_class = DINConfig

    def __init__(self, config: DINConfig, n_items: int, max_len: int) -> None:
        super().__init__(config, n_items, max_len)
        d, a = config.embedding_size, config.attention_size
        self.item_embedding = nn.Embedding(n_items + 1, d, padding_idx=0)
        self.attention_in = nn.Linear(4 * d, a)
        self.attention_dice = Dice(a, config.dice)
        self.attention_out = nn.Linear(a, 1)
        sizes = (2 * d, *config.hidden_sizes)
        self.hidden = nn.ModuleList(nn.Linear(i, o) for i, o in zip(sizes[:-1], sizes[1:],
                                                                    strict=True))
        self.hidden_dice = nn.ModuleList(Dice(o, config.dice) for o in sizes[1:])
        self.output = nn.Linear(sizes[-1], 2)
        for module in self.modules():  # xavier on weights, default biases (spec §3.1, §5.3)
            if isinstance(module, (nn.Linear, nn.Embedding)):
                nn.init.xavier_uniform_(module.weight)
        with torch.no_grad():
            self.item_embedding.weight[0].zero_()

    def attention_scores(self, history: torch.Tensor, target: torch.Tensor,
                         real: torch.Tensor) -> torch.Tensor:
        """(B, C, L) raw attention scores of every position for every candidate.

        history (B, L, d), target (B, C, d), real (B, L); padding positions score 0 (masked
        later)."""
        w_h, w_t, w_d, w_p = self.attention_in.weight.split(history.shape[-1], dim=1)
        by_position = history @ (w_h + w_d).T  # (B, L, a): e_n and the e_n of e_n - e_T
        by_candidate = target @ (w_t - w_d).T + self.attention_in.bias  # (B, C, a)
        product = (history[:, None, :, :] * target[:, :, None, :]) @ w_p.T  # (B, C, L, a)
        hidden = product + by_position[:, None] + by_candidate[:, :, None]
        cells = real[:, None, :].expand(hidden.shape[:3])
        return self.attention_out(masked_dice(self.attention_dice, hidden, cells)).squeeze(-1)

    def logits(self, batch: Batch, candidates: torch.Tensor) -> torch.Tensor:
        history = self.item_embedding(batch.items)  # (B, L, d)
        target = self.item_embedding(candidates)  # (B, C, d)
        real = batch.items > 0
        scores = self.attention_scores(history, target, real)
        scores = scores.masked_fill(~real[:, None, :], -torch.inf)
        weights = torch.softmax(scores, dim=-1).nan_to_num(0.0)  # a row without history: 0
        pooled = weights @ history  # (B, C, d)
        x = torch.cat([pooled, target], dim=-1)
        for layer, dice in zip(self.hidden, self.hidden_dice, strict=True):
            x = layer(x)
            x = dice(x.reshape(-1, x.shape[-1])).reshape(x.shape)
        out = self.output(x)
        return out[..., 1] - out[..., 0]
