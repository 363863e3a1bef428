"""Checkpoints: tensors and plain values only, written atomically, read with weights_only=True.

A checkpoint carries ``meta`` (model name, catalogue size, max_len) so that
loading into another model or dataset is refused with a one-line error instead of a shape dump.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, BinaryIO

import torch

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
        state = torch.load(path if data is None else data, map_location="cpu",
                           weights_only=True)
    except Exception as err:  # corrupt, truncated, or holding arbitrary objects
        reason = str(err).splitlines()[0][:200] if str(err) else type(err).__name__
        raise CheckpointError(f"{path}: not a readable denoiserec checkpoint ({reason})") from None
    if not isinstance(state, dict) or "meta" not in state or "model" not in state:
        raise CheckpointError(f"{path}: not a denoiserec checkpoint (no meta/model entries)")
    for key, value in (expect or {}).items():
        found = state["meta"].get(key)
        if found != value:
            raise CheckpointError(
                f"{path}: checkpoint {key} is {found!r}, expected {value!r} (a checkpoint of "
                "another model or dataset)")
    return state
