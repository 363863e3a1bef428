"""Checkpoints: tensors and plain values only, written atomically, read with weights_only=True.

A checkpoint carries ``meta`` (model name, catalogue size, max_len) so that
loading into another model or dataset is refused with a one-line error instead of a shape dump.
"""

from __future__ import annotations

import pickle
import warnings
from pathlib import Path
from typing import Any, BinaryIO

import torch
from torch import nn

from denoiserec.atomic import atomic_write_bytes
from denoiserec.errors import CheckpointError


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    atomic_write_bytes(path, lambda handle: torch.save(state, handle))


def load_checkpoint(path: Path, expect: dict[str, Any] | None = None,
                    data: BinaryIO | None = None) -> dict[str, Any]:
    """Load a checkpoint safely and check its ``meta`` against ``expect``; from ``data`` (the
    file's bytes as another process read them) when given, else from ``path``."""
    if data is None and not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        with warnings.catch_warnings():  # torch warns about pickle protocols on stderr
            warnings.simplefilter("ignore")
            state = torch.load(path if data is None else data, weights_only=True,
                               map_location="cpu")
    except Exception as err:  # corrupt, truncated, or holding arbitrary objects
        raise CheckpointError(f"{path}: not a readable denoiserec checkpoint "
                              f"({unreadable_reason(err)})") from None
    if not isinstance(state, dict) or "meta" not in state or "model" not in state:
        raise CheckpointError(f"{path}: not a denoiserec checkpoint (no meta/model entries)")
    for key, value in (expect or {}).items():
        found = state["meta"].get(key)
        if found != value:
            raise CheckpointError(
                f"{path}: checkpoint {key} is {found!r}, expected {value!r} (a checkpoint of "
                "another model or dataset)")
    return state


def unreadable_reason(err: Exception) -> str:
    """Our own words for why ``torch.load(weights_only=True)`` failed. PyTorch's message is
    not quoted: it is long, and it advises ``weights_only=False``, which would run whatever
    code an untrusted file holds."""
    if isinstance(err, pickle.UnpicklingError):
        return ("it holds Python objects, not only tensors and plain values; refused, since "
                "loading them could run code")
    if isinstance(err, (RuntimeError, EOFError)):
        return "truncated or corrupt: not a complete PyTorch file"
    return f"not a PyTorch checkpoint ({type(err).__name__})"


def load_weights_into(model: nn.Module, weights: dict[str, Any], path: Path) -> None:
    """Load ``weights`` into ``model``, refusing first in one line weights of other names or
    shapes (a run whose ``config.yaml`` was edited after training builds another model)."""
    expected = model.state_dict()
    for name, tensor in expected.items():
        found = weights.get(name)
        if not isinstance(found, torch.Tensor):
            raise CheckpointError(f"{path}: no weights for {name}; the configuration builds "
                                  "another model than the one saved")
        if found.shape != tensor.shape:
            raise CheckpointError(
                f"{path}: {name} has shape {tuple(found.shape)} but the configuration builds "
                f"{tuple(tensor.shape)}; the run's config.yaml no longer matches its checkpoint")
    extra = sorted(set(weights) - set(expected))
    if extra:
        raise CheckpointError(f"{path}: holds weights the configuration does not build "
                              f"({extra[0]}); the run's config.yaml no longer matches it")
    model.load_state_dict(weights)
