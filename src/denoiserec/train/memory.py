"""Refuse, before a byte is allocated, settings whose training needs more memory than the device
has (``model.hidden_size=100000`` or ``max_len=1000000000`` would otherwise end in the
allocator's traceback after it tried to take the memory).

The estimate is a lower bound, so that it never refuses a run that fits: the parameters (counted
exactly by building the model on PyTorch's ``meta`` device, which allocates nothing) times four
(weights, gradients and Adam's two moments), plus one training batch's scores (logits, their
softmax and its gradient, float32): over the catalogue for ``train.loss=ce``, over the target and
its ``n_negatives`` for ``sampled`` and ``bpr`` (the losses for catalogues too large to score);
under torchrun one process holds its share of the batch only. Activations inside the encoder come
on top.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from denoiserec.data.parsing import available_memory
from denoiserec.errors import ConfigError
from denoiserec.models import build_model
from denoiserec.protocols import Split

FLOAT_BYTES = 4
PARAMETER_COPIES = 4  # weights, gradients, Adam's first and second moments
SCORE_COPIES = 3  # logits, softmax, gradient


def _size(size: float) -> str:
    return f"{size / 2**30:.1f} GiB" if size >= 2**30 else f"{size / 2**20:.1f} MiB"


def parameter_bytes(model_config: Any, n_items: int, max_len: int) -> tuple[int, str]:
    """Bytes of the model's parameters and buffers, and its largest parameter (named, with its
    shape), from a build on the ``meta`` device."""
    with torch.device("meta"):
        model = build_model(model_config, n_items, max_len)
    tensors = dict(model.named_parameters()) | dict(model.named_buffers())
    if not tensors:
        return 0, "none"
    name, largest = max(tensors.items(), key=lambda pair: pair[1].numel())
    total = sum(t.numel() * t.element_size() for t in tensors.values())
    return total, f"{name} {' x '.join(str(n) for n in largest.shape)}"


def device_memory(device: torch.device) -> int | None:
    """Bytes free for a new allocation on ``device`` (None when unknown)."""
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    return available_memory()


def check_memory(model_config: Any, split: Split, max_len: int, batch_size: int,
                 window: bool, device: torch.device, loss: str = "ce", n_negatives: int = 1,
                 processes: int = 1) -> None:
    """Refuse in one line settings whose training needs more than the free memory of
    ``device`` (see the module docstring for what is counted); ``loss`` and ``n_negatives``
    are ``train.loss`` and ``train.n_negatives``, ``processes`` the ranks sharing a batch."""
    free = device_memory(device)
    n_items = split.log.n_items
    params, largest = parameter_bytes(model_config, n_items, max_len)
    longest = int(np.diff(split.log.offsets).max(initial=1))
    positions = min(max_len, longest) if window else 1
    columns = n_items + 1 if loss == "ce" else n_negatives + 1
    local_batch = -(-batch_size // max(1, processes))  # this process's share
    scores = local_batch * positions * columns * FLOAT_BYTES * SCORE_COPIES
    need = params * PARAMETER_COPIES + scores
    if free is not None and need > free:
        raise ConfigError(
            f"these settings need at least {_size(need)} of memory to train (parameters "
            f"{_size(params)} x {PARAMETER_COPIES} with gradients and Adam's moments, largest "
            f"{largest}; scores of a batch {_size(scores)}) and {device.type} has {_size(free)} "
            "free; lower model.hidden_size, data.max_len or train.batch_size")
