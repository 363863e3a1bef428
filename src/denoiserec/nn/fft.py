"""Frequency-domain sequence filters, shared by FMLP-Rec and END4Rec.

* :func:`left_align` / :func:`right_align` -- the batches are right-padded and cut to their
  longest row; FFT filters mix every slot of a fixed-length window circularly, so the models
  work on the papers' layout: ``max_len`` slots, left-padded, the most recent item last. The
  result then depends on neither the batch width nor the padding (FMLP-Rec ``datasets.py``,
  END4Rec spec §1.2, §2.6).
* :func:`frequency_filter` -- ``irfft(rfft(x) * W)`` along the sequence axis, autograd flowing
  through both transforms (the END4Rec release round-trips through NumPy and cuts the gradient,
  spec §2.2(d); here it never leaves torch). By the convolution theorem it equals the circular
  convolution of ``x`` with ``irfft(W)`` (tested against the direct sum).
* :class:`LearnableFilter` -- FMLP-Rec's filter layer (Zhou et al., WWW 2022, Eq. 5-7): a
  learnable complex filter per (frequency, channel), then dropout, residual and LayerNorm.
* :class:`FilterEncoder` -- FMLP-Rec's stack: filter layer + point-wise feed-forward, n times.
* :class:`ChunkedSpectralMixer`, :func:`compactness`, :func:`behaviour_filter` -- END4Rec's
  miner, its regulariser and its per-behaviour soft filter (``models/end4rec.py``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from denoiserec.nn.transformer import FeedForward


def left_align(x: torch.Tensor, lengths: torch.Tensor, width: int) -> torch.Tensor:
    """(B, L', ...) right-padded rows -> (B, width, ...) left-padded: a row's last real item at
    slot ``width - 1``; rows longer than ``width`` keep their last ``width`` items."""
    B, L = x.shape[:2]
    slots = torch.arange(width, device=x.device)[None, :]
    source = slots - (width - lengths[:, None])  # (B, width) source position of each slot
    real = source >= 0
    index = source.clamp(min=0, max=max(L - 1, 0))
    index = index.view(B, width, *([1] * (x.dim() - 2))).expand(B, width, *x.shape[2:])
    out = x.gather(1, index)
    mask = real.view(B, width, *([1] * (x.dim() - 2)))
    return torch.where(mask, out, torch.zeros_like(out))


def right_align(x: torch.Tensor, lengths: torch.Tensor, width: int) -> torch.Tensor:
    """The inverse of :func:`left_align`: (B, max_len, ...) left-padded -> (B, width, ...)
    right-padded (positions at or after ``lengths`` are 0)."""
    B, L = x.shape[:2]
    positions = torch.arange(width, device=x.device)[None, :]
    source = positions + (L - lengths[:, None])
    real = positions < lengths[:, None]
    index = source.clamp(min=0, max=L - 1)
    index = index.view(B, width, *([1] * (x.dim() - 2))).expand(B, width, *x.shape[2:])
    out = x.gather(1, index)
    return torch.where(real.view(B, width, *([1] * (x.dim() - 2))), out, torch.zeros_like(out))


def frequency_filter(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """``irfft(rfft(x, dim=1) * weight, n=L)`` with orthonormal transforms.

    Args:
        x: (B, L, D) real sequence.
        weight: (L // 2 + 1, D) or broadcastable complex filter.

    Returns:
        (B, L, D): the circular convolution of every channel of ``x`` with ``irfft(weight)``
        (times sqrt(L) under the orthonormal scaling).
    """
    length = x.shape[1]
    spectrum = torch.fft.rfft(x, dim=1, norm="ortho")
    return torch.fft.irfft(spectrum * weight, n=length, dim=1, norm="ortho")


class LearnableFilter(nn.Module):
    """FMLP-Rec's filter layer: ``LN(x + Dropout(irfft(W ⊙ rfft(x))))`` (Eq. 5-7)."""

    def __init__(self, max_len: int, hidden: int, dropout: float, eps: float,
                 init_std: float = 0.02) -> None:
        super().__init__()
        # FMLP-Rec: complex_weight = randn(1, L//2+1, H, 2) * 0.02
        self.weight = nn.Parameter(torch.randn(max_len // 2 + 1, hidden, 2) * init_std)
        self.dropout = nn.Dropout(dropout)
        self.norm = nn.LayerNorm(hidden, eps=eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        filtered = frequency_filter(x, torch.view_as_complex(self.weight))
        return self.norm(x + self.dropout(filtered))

    def at_last_slot(self, x: torch.Tensor) -> torch.Tensor:
        """(B, L, D) -> (B, D): :meth:`forward` at slot ``L - 1`` only, as the direct sum of the
        circular convolution there (``irfft(rfft(x) W) = x (*) irfft(W)``): O(L D) a row
        instead of two FFTs."""
        length = x.shape[1]
        kernel = torch.fft.irfft(torch.view_as_complex(self.weight), n=length, dim=0)  # (L, D)
        filtered = (x * kernel.flip(0)[None]).sum(1)  # sum_k x_k g_(L-1-k)
        return self.norm(x[:, -1] + self.dropout(filtered))


class FilterEncoder(nn.Module):
    """FMLP-Rec's encoder: ``n_layers`` x (learnable filter -> point-wise feed-forward)."""

    def __init__(self, n_layers: int, max_len: int, hidden: int, inner: int, dropout: float,
                 activation: str, eps: float) -> None:
        super().__init__()
        self.filters = nn.ModuleList(LearnableFilter(max_len, hidden, dropout, eps)
                                     for _ in range(n_layers))
        self.feed_forwards = nn.ModuleList(FeedForward(hidden, inner, dropout, activation, eps)
                                           for _ in range(n_layers))

    def forward(self, x: torch.Tensor, last_slot: bool = False) -> torch.Tensor:
        """(B, L, D) -> (B, L, D), or (B, D) at the last slot when ``last_slot``: the last
        layer then runs there only (the earlier ones must still mix every slot)."""
        layers = list(zip(self.filters, self.feed_forwards, strict=True))
        for filter_layer, feed_forward in layers[:-1]:
            x = feed_forward(filter_layer(x))
        filter_layer, feed_forward = layers[-1]
        return feed_forward(filter_layer.at_last_slot(x) if last_slot else filter_layer(x))


class ChunkedSpectralMixer(nn.Module):
    """END4Rec's Efficient Behavior Sequence Miner core (spec §2.2, ``afno`` reading): in the
    frequency domain, a learnable complex filter per (frequency, channel) (frequency-aware
    fusion), then a complex 2-layer MLP per channel chunk shared across frequencies (the
    chunked diagonal mechanism: a block-diagonal d x d map with ``n_blocks`` blocks), the
    activation applied to real and imaginary parts separately.

    The release takes the real part of a NumPy FFT (spec §2.2(a)-(d)): no gradient reaches the
    embeddings, and its output is exactly symmetric in time (S[L-1] == S[1]). Here the
    spectrum stays complex and in torch, so order matters and gradients flow.
    """

    def __init__(self, max_len: int, hidden: int, n_blocks: int, frequency_filter: bool,
                 init_std: float = 0.02) -> None:
        super().__init__()
        if hidden % n_blocks:
            raise ValueError(f"hidden size {hidden} is not a multiple of {n_blocks} blocks")
        size = hidden // n_blocks
        self.n_blocks = n_blocks
        self.filter = (nn.Parameter(torch.randn(max_len // 2 + 1, hidden, 2) * init_std)
                       if frequency_filter else None)
        scale = size ** -0.5
        self.w1 = nn.Parameter(torch.randn(n_blocks, size, size, 2) * scale / 2 ** 0.5)
        self.b1 = nn.Parameter(torch.zeros(n_blocks, size, 2))
        self.w2 = nn.Parameter(torch.randn(n_blocks, size, size, 2) * scale / 2 ** 0.5)
        self.b2 = nn.Parameter(torch.zeros(n_blocks, size, 2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, L, d) -> (B, L, d): irfft(MLP_blocks(rfft(x) * W))."""
        B, L, d = x.shape
        spectrum = torch.fft.rfft(x, dim=1, norm="ortho")  # (B, F, d)
        if self.filter is not None:
            spectrum = spectrum * torch.view_as_complex(self.filter)[: L // 2 + 1]
        chunks = spectrum.reshape(B, -1, self.n_blocks, d // self.n_blocks)  # (B, F, k, c)
        hidden = torch.einsum("bfkc,kce->bfke", chunks, torch.view_as_complex(self.w1))
        hidden = hidden + torch.view_as_complex(self.b1)
        hidden = torch.complex(F.gelu(hidden.real), F.gelu(hidden.imag))
        out = torch.einsum("bfkc,kce->bfke", hidden, torch.view_as_complex(self.w2))
        out = (out + torch.view_as_complex(self.b2)).reshape(B, -1, d)
        return torch.fft.irfft(out, n=L, dim=1, norm="ortho")


def compactness(x: torch.Tensor, epsilon: float) -> torch.Tensor:
    """(B,) END4Rec's compactness regulariser ``1/2 logdet(I + d/(L eps^2) X X^T)`` per row
    (spec §2.3), through the smaller Gram matrix (Sylvester: det(I_L + c X X^T) =
    det(I_d + c X^T X)): O(L d min(L, d) + min(L, d)^3) instead of O(L^2 d + L^3)."""
    _, L, d = x.shape
    c = d / (L * epsilon ** 2)
    gram = x @ x.transpose(1, 2) if d >= L else x.transpose(1, 2) @ x
    eye = torch.eye(gram.shape[-1], dtype=x.dtype, device=x.device)
    chol = torch.linalg.cholesky(eye + c * gram)
    return torch.log(torch.diagonal(chol, dim1=-2, dim2=-1)).sum(-1)  # 1/2 * 2 sum log diag


def behaviour_filter(x: torch.Tensor, behaviours: torch.Tensor,
                     kernels: torch.Tensor) -> torch.Tensor:
    """END4Rec's soft filter (spec §2.5, ``freq``): ``sum_j irfft(rfft(x * 1[beh = j]) * K_j)``.

    Args:
        x: (B, L, d); behaviours: (B, L) ids in 0..n_b-1 (one-hot selects the kernel);
        kernels: (n_b, L // 2 + 1, d) complex.

    Linear in ``x``: the masked spectra are weighted and summed before a single irfft.
    """
    L = x.shape[1]
    onehot = F.one_hot(behaviours, kernels.shape[0]).to(x.dtype)  # (B, L, n_b)
    split = x[:, None] * onehot.permute(0, 2, 1)[..., None]  # (B, n_b, L, d)
    spectra = torch.fft.rfft(split, dim=2, norm="ortho")  # (B, n_b, F, d)
    mixed = (spectra * kernels[None, :, : L // 2 + 1]).sum(1)
    return torch.fft.irfft(mixed, n=L, dim=1, norm="ortho")
