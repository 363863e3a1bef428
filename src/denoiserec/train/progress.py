"""Progress within an epoch where no progress bar shows (output piped or logged): a line every
``train.progress_seconds``, so a long epoch is never silent for minutes."""

from __future__ import annotations

import time
from typing import Any


class EpochHeartbeat:
    """Prints ``epoch 3: batch 120/800 (15%), loss 7.1234, 184 s`` every
    ``train.progress_seconds`` of an epoch when progress is ``shown`` (``train.progress``, and
    this process is the one that reports) and no bar shows on a ``terminal``."""

    def __init__(self, epoch: int, batches: int, train: Any, terminal: bool,
                 shown: bool) -> None:
        self.epoch, self.batches, self.seconds = epoch, batches, train.progress_seconds
        self.enabled = shown and not terminal
        self.started = self.last = time.perf_counter()

    def tick(self, step: int, mean_loss: float) -> None:
        """After batch ``step`` (from 0); ``mean_loss`` is the epoch's mean so far."""
        now = time.perf_counter()
        if not self.enabled or now - self.last < self.seconds or step + 1 >= self.batches:
            return
        self.last = now
        print(f"epoch {self.epoch}: batch {step + 1}/{self.batches} "
              f"({100 * (step + 1) / self.batches:.0f}%), loss {mean_loss:.4f}, "
              f"{now - self.started:.0f} s", flush=True)
