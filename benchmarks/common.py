"""Helpers every benchmark script shares: the fast mode's settings and the timing loops (means
with t intervals over seeds are ``denoiserec.report.stats``', like every table's).

The fast mode is the converged suite's (``converged.sh``, RECORD.md §5.1): all-position
windows overlapping by half with per-epoch offsets, selection on the mean of 3 evaluations,
RecBole's early stop, dropout 0.2 for SASRec; batch size and stride per dataset as measured
there. A script imports it from here instead of writing its own copy.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

PROTOCOL = {"ml-100k": "recbole", "ml-1m": "recbole", "beauty": "fmlp",
            "retailrocket": "target"}


@dataclass(frozen=True)
class FastMode:
    """The fast mode's batch size (windows) and window stride for one dataset."""

    batch_size: int
    stride: int
    data: tuple[str, ...] = ()


FAST = {"ml-100k": FastMode(8, 25), "beauty": FastMode(256, 25),
        "ml-1m": FastMode(64, 100, ("max_len=200",)), "retailrocket": FastMode(256, 25)}
FAST_TRAIN = ("train.instances=window", "train.window_offsets=true",
              "train.selection_window=3", "train.patience=10")  # converged.sh: epochs=200
SASREC_DROPOUT = ("model.hidden_dropout=0.2", "model.attn_dropout=0.2")


def fast_mode(dataset: str, batch_size: bool = True) -> list[str]:
    """``--set`` overrides of the fast mode on ``dataset`` (SASRec's dropout not included:
    add :data:`SASREC_DROPOUT` for SASRec runs); ``batch_size=False`` leaves the batch size
    to the caller."""
    if dataset not in FAST:
        raise ValueError(f"no fast-mode setting for {dataset}; known: {', '.join(FAST)}")
    mode = FAST[dataset]
    batch = [f"batch_size={mode.batch_size}"] if batch_size else []
    return [*FAST_TRAIN, f"train.window_stride={mode.stride}", *batch, *mode.data]


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def seconds_per_call(step: Callable[[], object], repeats: int, warmup: int = 1,
                     device: torch.device | None = None) -> list[float]:
    """Seconds of each of ``repeats`` calls of ``step`` after ``warmup`` untimed ones (CUDA
    synchronised around each call when ``device`` is a GPU)."""
    device = device or torch.device("cpu")
    for _ in range(warmup):
        step()
    times = []
    for _ in range(repeats):
        synchronize(device)
        start = time.perf_counter()
        step()
        synchronize(device)
        times.append(time.perf_counter() - start)
    return times


def seconds_per_batch(trainer, epoch: int, count: int) -> float:
    """Seconds per batch of ``trainer.train_epoch(epoch, max_batches=count)`` (the first
    ``count`` batches of that epoch's shuffled order)."""
    (seconds,) = seconds_per_call(lambda: trainer.train_epoch(epoch, max_batches=count), 1,
                                  warmup=0, device=trainer.device)
    return seconds / count


def median(values: list[float]) -> float:
    return statistics.median(values)
