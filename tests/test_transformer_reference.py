"""The Transformer layer against a naive re-implementation written out here.

One post-LN layer of RecBole 1.2.1 / BERT: multi-head attention with explicit matmuls, the
1/sqrt(head size) scale, the additive mask (-10000 on disallowed keys), softmax, output
projection, residual + LayerNorm; then W2 GELU(W1 x), residual + LayerNorm. The reference
copies the weights of ``denoiserec.nn.transformer.TransformerLayer`` (q/k/v fused in ``qkv``:
q = rows [0:H], k = [H:2H], v = [2H:3H]) and runs in float64; the layer runs in eval mode.
"""

from __future__ import annotations

import math

import pytest
import torch

from denoiserec.nn.transformer import TransformerEncoder, TransformerLayer, attention_mask

B, L, H, HEADS, INNER = 4, 7, 16, 2, 24
LENGTHS = (7, 4, 1, 2)  # right-padded rows, one full and one with a single item


def _inputs(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    lengths = torch.tensor(LENGTHS)
    real = torch.arange(L)[None, :] < lengths[:, None]
    items = torch.where(real, torch.randint(1, 30, (B, L), generator=g), 0)
    x = torch.randn(B, L, H, generator=g)
    return x, items


def _layer(seed: int = 0, activation: str = "gelu") -> TransformerLayer:
    torch.manual_seed(seed)
    layer = TransformerLayer(H, HEADS, INNER, hidden_dropout=0.3, attn_dropout=0.3,
                             activation=activation, eps=1e-12)
    with torch.no_grad():  # non-trivial LayerNorm parameters and biases
        for parameter in layer.parameters():
            parameter.add_(0.1 * torch.randn_like(parameter))
    return layer.eval()


def _layer_norm(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor,
                eps: float) -> torch.Tensor:
    mean = x.mean(-1, keepdim=True)
    variance = ((x - mean) ** 2).mean(-1, keepdim=True)
    return (x - mean) / torch.sqrt(variance + eps) * weight + bias


def _gelu(x: torch.Tensor) -> torch.Tensor:
    return 0.5 * x * (1.0 + torch.erf(x / math.sqrt(2.0)))


def naive_layer(layer: TransformerLayer, x: torch.Tensor, items: torch.Tensor,
                causal: bool, activation: str = "gelu") -> torch.Tensor:
    """(B, L, H) output of one post-LN layer, every step written out, in float64."""
    p = {name: value.detach().double() for name, value in layer.named_parameters()}
    x = x.double()
    w_qkv, b_qkv = p["attention.qkv.weight"], p["attention.qkv.bias"]
    size = H // HEADS
    output = torch.zeros_like(x)
    for b in range(x.shape[0]):
        # additive mask: key j allowed iff item j is real (and j <= i when causal)
        mask = torch.zeros(L, L, dtype=torch.float64)
        for i in range(L):
            for j in range(L):
                if items[b, j] == 0 or (causal and j > i):
                    mask[i, j] = -10000.0
        q = x[b] @ w_qkv[:H].T + b_qkv[:H]
        k = x[b] @ w_qkv[H:2 * H].T + b_qkv[H:2 * H]
        v = x[b] @ w_qkv[2 * H:].T + b_qkv[2 * H:]
        heads = []
        for h in range(HEADS):
            cols = slice(h * size, (h + 1) * size)
            logits = q[:, cols] @ k[:, cols].T / math.sqrt(size) + mask
            weights = torch.exp(logits - logits.max(-1, keepdim=True).values)
            weights = weights / weights.sum(-1, keepdim=True)
            heads.append(weights @ v[:, cols])
        context = torch.cat(heads, -1)
        attended = context @ p["attention.out.weight"].T + p["attention.out.bias"]
        hidden = _layer_norm(x[b] + attended, p["attention.norm.weight"],
                             p["attention.norm.bias"], 1e-12)
        up = hidden @ p["feed_forward.up.weight"].T + p["feed_forward.up.bias"]
        act = _gelu(up) if activation == "gelu" else up.clamp(min=0)
        down = act @ p["feed_forward.down.weight"].T + p["feed_forward.down.bias"]
        output[b] = _layer_norm(hidden + down, p["feed_forward.norm.weight"],
                                p["feed_forward.norm.bias"], 1e-12)
    return output


@pytest.mark.parametrize("causal", [True, False])
@pytest.mark.parametrize("activation", ["gelu", "relu"])
def test_layer_equals_the_naive_reference(causal: bool, activation: str) -> None:
    layer = _layer(activation=activation)
    for seed in range(3):
        x, items = _inputs(seed)
        mask = attention_mask(items, causal)
        expected = naive_layer(layer, x, items, causal, activation)
        with torch.no_grad():
            got = layer(x, mask)
        assert got.shape == (B, L, H)
        assert torch.allclose(got.double(), expected, atol=1e-5, rtol=0), \
            float((got.double() - expected).abs().max())


def test_mask_values_and_shape() -> None:
    _, items = _inputs()
    for causal in (True, False):
        mask = attention_mask(items, causal).expand(B, 1, L, L)  # broadcast over queries
        for b in range(B):
            for i in range(L):
                for j in range(L):
                    allowed = items[b, j] != 0 and (not causal or j <= i)
                    assert float(mask[b, 0, i, j]) == (0.0 if allowed else -10000.0)


@pytest.mark.parametrize("causal", [True, False])
def test_query_path_equals_the_full_pass_at_those_positions(causal: bool) -> None:
    layer = _layer(1)
    torch.manual_seed(2)
    encoder = TransformerEncoder(2, H, HEADS, INNER, hidden_dropout=0.3, attn_dropout=0.3).eval()
    for seed in range(3):
        x, items = _inputs(seed)
        mask = attention_mask(items, causal)
        for query in (torch.tensor(LENGTHS) - 1, torch.tensor([0, 3, 6, 2])):
            with torch.no_grad():
                full = layer(x, mask)
                one = layer(x, mask, query)
                encoded = encoder(x, mask)
                encoded_query = encoder(x, mask, query)
            assert one.shape == (B, 1, H)
            assert torch.allclose(one[:, 0], full[torch.arange(B), query], atol=1e-5, rtol=0)
            expected = naive_layer(layer, x, items, causal)[torch.arange(B), query]
            assert torch.allclose(one[:, 0].double(), expected, atol=1e-5, rtol=0)
            assert encoded_query.shape == (B, H)
            assert torch.allclose(encoded_query, encoded[torch.arange(B), query], atol=1e-5,
                                  rtol=0)


def test_encoder_stacks_layers_in_order() -> None:
    torch.manual_seed(3)
    encoder = TransformerEncoder(2, H, HEADS, INNER, hidden_dropout=0.3, attn_dropout=0.3).eval()
    x, items = _inputs()
    mask = attention_mask(items, True)
    expected = naive_layer(encoder.layers[1], naive_layer(encoder.layers[0], x, items, True),
                           items, True)
    with torch.no_grad():
        got = encoder(x, mask)
    assert torch.allclose(got.double(), expected, atol=1e-5, rtol=0)


def test_dropout_is_active_in_training_only() -> None:
    layer = _layer()
    x, items = _inputs()
    mask = attention_mask(items, False)
    with torch.no_grad():
        evaluated = layer(x, mask)
        torch.manual_seed(0)
        trained = layer.train()(x, mask)
    assert not torch.allclose(trained, evaluated, atol=1e-3)
