"""The sequence encoders of the registered backbones, over given input embeddings.

One encoder per architecture, shared by the backbone models and by every denoiser that wraps
one: SASRec and BERT4Rec own a :class:`TransformerBackbone` (causal or bidirectional), GRU4Rec
a :class:`GRUBackbone`. Both map ``(B, L, H)`` input embeddings and the ``(B, L)`` item ids
(for the padding mask) to ``(B, L, H)``, or to ``(B, H)`` at the positions ``query`` (B,).
A denoiser builds its backbone's encoder through the registry
(``SequentialRecommender.build_encoder``) and feeds it re-weighted or edited item embeddings.

``reset_parameters`` draws the architecture's initialisation (RecBole 1.2.1's); the owning
model calls it, so that the order of random draws is the model's (same numbers as before the
encoders were shared).
"""

from __future__ import annotations

import torch
from torch import nn

from denoiserec.nn.transformer import TransformerEncoder, attention_mask, init_bert_weights


class TransformerBackbone(nn.Module):
    """SASRec Eq. 1-6 / BERT4Rec §3.3-3.4: learned positions (position 0 = the oldest item of
    the window), LayerNorm, dropout, post-LN Transformer blocks; causal or bidirectional."""

    def __init__(self, hidden: int, max_len: int, n_layers: int, n_heads: int, inner_size: int,
                 hidden_dropout: float, attn_dropout: float, act: str, layer_norm_eps: float,
                 initializer_range: float, causal: bool) -> None:
        super().__init__()
        self.causal = causal
        self.initializer_range = initializer_range
        self.position_embedding = nn.Embedding(max_len, hidden)
        self.norm = nn.LayerNorm(hidden, eps=layer_norm_eps)
        self.dropout = nn.Dropout(hidden_dropout)
        self.encoder = TransformerEncoder(n_layers, hidden, n_heads, inner_size, hidden_dropout,
                                          attn_dropout, act, layer_norm_eps)

    def reset_parameters(self) -> None:
        """N(0, initializer_range) weights, zero biases, unit LayerNorm (RecBole)."""
        self.apply(lambda m: init_bert_weights(m, self.initializer_range))

    def forward(self, inputs: torch.Tensor, items: torch.Tensor,
                query: torch.Tensor | None = None, add_positions: bool = True) -> torch.Tensor:
        """``add_positions=False``: the inputs already carry positions (a denoiser's encoded
        sequence), the learned table is not added a second time."""
        if add_positions:
            inputs = inputs + self.position_embedding.weight[: items.shape[1]][None]
        x = self.dropout(self.norm(inputs))  # SASRec Eq. 1: E + P
        return self.encoder(x, attention_mask(items, causal=self.causal), query)


class GRUBackbone(nn.Module):
    """GRU4Rec §3.1 (RecBole's variant): dropout -> GRU without bias -> dense back to the
    embedding size."""

    def __init__(self, embedding_size: int, hidden_size: int, n_layers: int,
                 dropout: float) -> None:
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.gru = nn.GRU(embedding_size, hidden_size, n_layers, bias=False, batch_first=True)
        self.dense = nn.Linear(hidden_size, embedding_size)

    def reset_parameters(self) -> None:
        """Xavier-uniform recurrent then input weights per layer (RecBole's order); the dense
        layer keeps PyTorch's default."""
        for layer in range(self.gru.num_layers):
            nn.init.xavier_uniform_(getattr(self.gru, f"weight_hh_l{layer}"))
            nn.init.xavier_uniform_(getattr(self.gru, f"weight_ih_l{layer}"))

    def forward(self, inputs: torch.Tensor, items: torch.Tensor,
                query: torch.Tensor | None = None, add_positions: bool = True) -> torch.Tensor:
        """``add_positions`` is accepted for a common signature (a GRU has no positions)."""
        hidden = self.dense(self.gru(self.dropout(inputs))[0])  # (B, L, H); right padding
        if query is None:
            return hidden
        return hidden.gather(1, query[:, None, None].expand(-1, 1, hidden.shape[2])).squeeze(1)
