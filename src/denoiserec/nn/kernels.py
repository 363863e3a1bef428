"""Multiple Gaussian Kernel Perceptron (MGSD-WSS §3.1, mgsd-wss spec §2.2 "GK").

Each item is compared with an anchor item by cosine similarity r, and r is read through k fixed
Gaussian kernels: an exact-match kernel at 1 (width 0.001) and k - 1 soft kernels at the centres
of k - 1 equal bins of [-1, 1] (width 0.1). The published EHDWCL commit summed the k responses
into one scalar gain (within 1.08-1.17 for |r| < 0.9: nearly a constant; spec §7.3), and the
released code replaced the kernels by an MLP. Here the k-dimensional response is kept and mapped
into the embedding space by a learned linear map, added to the item's embedding, so the
kernels carry information: ``x_i = e_i + W_phi phi(r_i)``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

EXACT_WIDTH = 0.001
SOFT_WIDTH = 0.1


def kernel_means(n_kernels: int) -> torch.Tensor:
    """(k,) centres: 1 (exact match), then 1 - w/2, 1 - 3w/2, ... with w = 2 / (k - 1)."""
    width = 2.0 / (n_kernels - 1)
    soft = 1.0 - width / 2 - width * torch.arange(n_kernels - 1, dtype=torch.float64)
    return torch.cat([torch.ones(1, dtype=torch.float64), soft]).float()


def kernel_widths(n_kernels: int) -> torch.Tensor:
    """(k,) widths: 0.001 for the exact-match kernel, 0.1 for the others."""
    return torch.tensor([EXACT_WIDTH] + [SOFT_WIDTH] * (n_kernels - 1))


def kernel_responses(similarity: torch.Tensor, means: torch.Tensor,
                     widths: torch.Tensor) -> torch.Tensor:
    """(..., k) ``exp(-(r - mu_j)^2 / (2 sigma_j^2))`` of a (...) similarity tensor."""
    return torch.exp(-(similarity[..., None] - means) ** 2 / (2 * widths ** 2))


class GaussianKernelPerceptron(nn.Module):
    """``x_i = (e_i + W_phi phi(cos(e_i, anchor))) * mask_i`` over a (B, L, H) sequence.

    The similarities are taken on the embeddings *before* dropout (``undropped``) when given:
    on dropped rows the anchor's own cosine is about sqrt(1 - p), never 1, so the exact-match
    kernel would fire at evaluation only (the published code has the same mismatch; audit
    2026-12-03)."""

    def __init__(self, hidden: int, n_kernels: int) -> None:
        super().__init__()
        self.register_buffer("means", kernel_means(n_kernels), persistent=False)
        self.register_buffer("widths", kernel_widths(n_kernels), persistent=False)
        self.project = nn.Linear(n_kernels, hidden, bias=False)  # W_phi

    def forward(self, embeddings: torch.Tensor, anchor: torch.Tensor, mask: torch.Tensor,
                undropped: torch.Tensor | None = None) -> torch.Tensor:
        """(B, L, H) embeddings (the values), (B, H) anchor, (B, L, 1) mask, (B, L, H) the
        embeddings without dropout (the similarities; default: ``embeddings``) -> (B, L, H)."""
        keys = embeddings if undropped is None else undropped
        similarity = F.cosine_similarity(keys, anchor[:, None, :], dim=-1)  # (B, L)
        phi = kernel_responses(similarity, self.means, self.widths)  # (B, L, k)
        return (embeddings + self.project(phi)) * mask


class PerceptronMLP(nn.Module):
    """The released code's replacement (spec §2.2 HEAD): ``relu(W_2 relu(W_1 e + b_1))``,
    anchor-blind; kept as the ablation without kernels."""

    def __init__(self, hidden: int) -> None:
        super().__init__()
        self.first = nn.Linear(hidden, hidden)
        self.second = nn.Linear(hidden, hidden, bias=False)

    def forward(self, embeddings: torch.Tensor, anchor: torch.Tensor, mask: torch.Tensor,
                undropped: torch.Tensor | None = None) -> torch.Tensor:
        return F.relu(self.second(F.relu(self.first(embeddings)))) * mask
