"""What a staged model tells the trainer (``train/stages.py``): which parameter groups train."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TrainingStage:
    """One training stage: its number (1-based), the parameter groups it trains (names of the
    model's ``parameter_groups()``), the epoch it starts at, and the factor on the learning
    rate."""

    number: int
    groups: tuple[str, ...]
    first_epoch: int
    lr_scale: float = 1.0
