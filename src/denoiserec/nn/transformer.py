"""The Transformer encoder of SASRec / BERT4Rec and the denoisers built on them.

Post-LayerNorm blocks as in RecBole 1.2.1's ``TransformerEncoder`` (and the BERT they follow):
``x = LN(x + Dropout(Attn(x)))``, ``x = LN(x + Dropout(W2 act(W1 x)))``. Two implementation
choices for speed, numerically equivalent to RecBole's: query/key/value come from one fused
linear layer (same N(0, 0.02) initialisation per weight), and attention runs in
``torch.nn.functional.scaled_dot_product_attention`` with RecBole's additive mask (0 where
allowed, -10000 elsewhere, so fully padded query rows stay finite).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from denoiserec.config import check_choice, check_range
from denoiserec.errors import ConfigError

MASKED = -10000.0  # RecBole's additive mask value
ACTIVATIONS = {"gelu": F.gelu, "relu": F.relu}


def attention_mask(items: torch.Tensor, causal: bool) -> torch.Tensor:
    """(B, 1, L, L) additive mask: keys must be real items (and not in the future if causal)."""
    allowed = (items != 0)[:, None, None, :]  # (B, 1, 1, L)
    if causal:
        length = items.shape[1]
        allowed = allowed & torch.ones(length, length, dtype=torch.bool,
                                       device=items.device).tril()
    zero = torch.zeros((), dtype=torch.float32, device=items.device)
    return torch.where(allowed, zero, torch.tensor(MASKED, device=items.device))


class MultiHeadSelfAttention(nn.Module):
    """Multi-head self-attention with residual, dropout and post-LayerNorm."""

    def __init__(self, hidden: int, n_heads: int, attn_dropout: float, hidden_dropout: float,
                 eps: float) -> None:
        super().__init__()
        if hidden % n_heads:
            raise ValueError(f"hidden size {hidden} is not a multiple of n_heads {n_heads}")
        self.n_heads = n_heads
        self.qkv = nn.Linear(hidden, 3 * hidden)
        self.out = nn.Linear(hidden, hidden)
        self.attn_dropout = attn_dropout
        self.dropout = nn.Dropout(hidden_dropout)
        self.norm = nn.LayerNorm(hidden, eps=eps)

    def forward(self, x: torch.Tensor, mask: torch.Tensor,
                query: torch.Tensor | None = None) -> torch.Tensor:
        """Attend from every position, or only from position ``query`` (B,) when given.

        With ``query`` the result is (B, 1, D): exactly the rows a full pass would give at
        those positions, for a fraction of the cost (only keys and values need every row).
        """
        B, L, D = x.shape
        heads, size = self.n_heads, D // self.n_heads
        if query is None:
            q, k, v = self.qkv(x).view(B, L, 3, heads, size).unbind(2)
            residual = x
        else:
            w_q, w_kv = self.qkv.weight.split([D, 2 * D])
            b_q, b_kv = self.qkv.bias.split([D, 2 * D])
            residual = x.gather(1, query[:, None, None].expand(B, 1, D))  # (B, 1, D)
            q = F.linear(residual, w_q, b_q).view(B, 1, heads, size)
            k, v = F.linear(x, w_kv, b_kv).view(B, L, 2, heads, size).unbind(2)
            mask = mask.expand(B, -1, L, -1).gather(
                2, query[:, None, None, None].expand(B, 1, 1, L))  # (B, 1, 1, L)
        q, k, v = (t.transpose(1, 2) for t in (q, k, v))  # (B, heads, L or 1, D / heads)
        p = self.attn_dropout if self.training else 0.0
        context = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=p)
        context = context.transpose(1, 2).reshape(B, -1, D)
        return self.norm(residual + self.dropout(self.out(context)))


class FeedForward(nn.Module):
    """Position-wise feed-forward layer with residual, dropout and post-LayerNorm."""

    def __init__(self, hidden: int, inner: int, dropout: float, activation: str,
                 eps: float) -> None:
        super().__init__()
        self.up = nn.Linear(hidden, inner)
        self.down = nn.Linear(inner, hidden)
        self.activation = ACTIVATIONS[activation]
        self.dropout = nn.Dropout(dropout)
        self.norm = nn.LayerNorm(hidden, eps=eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(x + self.dropout(self.down(self.activation(self.up(x)))))


class TransformerLayer(nn.Module):
    def __init__(self, hidden: int, n_heads: int, inner: int, hidden_dropout: float,
                 attn_dropout: float, activation: str = "gelu", eps: float = 1e-12) -> None:
        super().__init__()
        self.attention = MultiHeadSelfAttention(hidden, n_heads, attn_dropout, hidden_dropout,
                                                eps)
        self.feed_forward = FeedForward(hidden, inner, hidden_dropout, activation, eps)

    def forward(self, x: torch.Tensor, mask: torch.Tensor,
                query: torch.Tensor | None = None) -> torch.Tensor:
        return self.feed_forward(self.attention(x, mask, query))


class TransformerEncoder(nn.Module):
    """A stack of ``n_layers`` post-LN Transformer layers."""

    def __init__(self, n_layers: int, hidden: int, n_heads: int, inner: int,
                 hidden_dropout: float, attn_dropout: float, activation: str = "gelu",
                 eps: float = 1e-12) -> None:
        super().__init__()
        self.layers = nn.ModuleList(
            TransformerLayer(hidden, n_heads, inner, hidden_dropout, attn_dropout, activation,
                             eps)
            for _ in range(n_layers)
        )

    def forward(self, x: torch.Tensor, mask: torch.Tensor,
                query: torch.Tensor | None = None) -> torch.Tensor:
        """(B, L, D) -> (B, L, D), or (B, D) at positions ``query`` (B,) when given.

        Only the last layer needs to run at the query positions: the earlier layers must still
        produce keys and values for every position.
        """
        for layer in self.layers[:-1]:
            x = layer(x, mask)
        if query is None:
            return self.layers[-1](x, mask)
        return self.layers[-1](x, mask, query).squeeze(1)


def init_bert_weights(module: nn.Module, std: float) -> None:
    """RecBole/BERT initialisation: N(0, std) weights, zero biases, unit LayerNorm."""
    if isinstance(module, (nn.Linear, nn.Embedding)):
        module.weight.data.normal_(mean=0.0, std=std)
    if isinstance(module, nn.Linear) and module.bias is not None:
        module.bias.data.zero_()
    if isinstance(module, nn.LayerNorm):
        module.bias.data.zero_()
        module.weight.data.fill_(1.0)


def init_xavier_weights(module: nn.Module) -> None:
    """MSDCCL's reference init: xavier-normal Linear/Embedding (fused q/k/v per (H, H) block),
    zero biases, unit LayerNorm, PyTorch's default for Conv2d."""
    if isinstance(module, (nn.Linear, nn.Embedding)):
        nn.init.xavier_normal_(module.weight)
    if isinstance(module, nn.Linear) and module.bias is not None:
        nn.init.zeros_(module.bias)
    if isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)
    if isinstance(module, MultiHeadSelfAttention):
        for block in module.qkv.weight.data.chunk(3):
            nn.init.xavier_normal_(block)


def check_transformer_settings(config: Any) -> None:
    """Sizes >= 1, hidden size divisible by the heads, dropouts in [0, 1), known activation
    (shared by every Transformer model's config)."""
    for key in ("n_layers", "n_heads", "hidden_size", "inner_size"):
        check_range(f"model.{key}", getattr(config, key), 1)
    for key in ("hidden_dropout", "attn_dropout"):
        check_range(f"model.{key}", getattr(config, key), 0, 1, high_open=True)
    check_range("model.initializer_range", config.initializer_range, 0, low_open=True)
    check_range("model.layer_norm_eps", config.layer_norm_eps, 0, low_open=True)
    check_choice("model.hidden_act", config.hidden_act, tuple(ACTIVATIONS))
    if config.hidden_size % config.n_heads:
        raise ConfigError(f"model.hidden_size ({config.hidden_size}) must be a multiple of "
                          f"model.n_heads ({config.n_heads})")
