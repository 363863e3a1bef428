"""Standard recommenders reading given input embeddings instead of their own item lookup.

Denoisers re-weight or edit the item embeddings of a sequence and then hand them to an ordinary
backbone (MSDCCL's soft branch: BERT4Rec, SASRec or GRU4Rec). Both classes map
``(B, L, H)`` inputs and the ``(B, L)`` item ids (for the padding mask) to ``(B, L, H)``, or to
``(B, H)`` at the positions ``query``.
"""

from __future__ import annotations

import torch
from torch import nn

from denoiserec.nn.transformer import TransformerEncoder, attention_mask, init_bert_weights


class TransformerOverEmbeddings(nn.Module):
    """BERT4Rec (bidirectional) or SASRec (``causal``) encoder: own position table, LayerNorm,
    dropout, post-LN Transformer, N(0, ``initializer_range``) init."""

    def __init__(self, hidden: int, max_len: int, n_layers: int, n_heads: int, inner_size: int,
                 hidden_dropout: float, attn_dropout: float, act: str, layer_norm_eps: float,
                 initializer_range: float, causal: bool) -> None:
        super().__init__()
        self.causal = causal
        self.position_embedding = nn.Embedding(max_len, hidden)
        self.norm = nn.LayerNorm(hidden, eps=layer_norm_eps)
        self.dropout = nn.Dropout(hidden_dropout)
        self.encoder = TransformerEncoder(n_layers, hidden, n_heads, inner_size, hidden_dropout,
                                          attn_dropout, act, layer_norm_eps)
        self.apply(lambda m: init_bert_weights(m, initializer_range))

    def forward(self, inputs: torch.Tensor, items: torch.Tensor,
                query: torch.Tensor | None = None) -> torch.Tensor:
        positions = self.position_embedding.weight[: items.shape[1]]
        x = self.dropout(self.norm(inputs + positions[None]))
        return self.encoder(x, attention_mask(items, causal=self.causal), query)


class GRUOverEmbeddings(nn.Module):
    """GRU4Rec: dropout -> GRU (no bias, xavier-uniform weights as RecBole) -> dense."""

    def __init__(self, hidden: int, n_layers: int, dropout: float) -> None:
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.gru = nn.GRU(hidden, hidden, n_layers, bias=False, batch_first=True)
        self.dense = nn.Linear(hidden, hidden)
        for weight in self.gru.parameters():  # weights only (bias=False)
            nn.init.xavier_uniform_(weight)

    def forward(self, inputs: torch.Tensor, items: torch.Tensor,
                query: torch.Tensor | None = None) -> torch.Tensor:
        hidden = self.dense(self.gru(self.dropout(inputs))[0])  # (B, L, H); right padding
        if query is None:
            return hidden
        return hidden.gather(1, query[:, None, None].expand(-1, 1, hidden.shape[2])).squeeze(1)
