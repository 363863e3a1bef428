"""The tests' random batch: right-padded random items, seeded, in the layout ``Batcher`` cuts.

Row ``b``'s real items are log rows ``b * width + position`` (so ``rows`` tells padding from
items, as a real batch does); prefix batches get one target per row, window batches one per
real position (0 on padding).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import torch

from denoiserec.data.batches import Batch
from denoiserec.nn.losses import uniform_negatives


def random_batch(lengths: Sequence[int], n_items: int, width: int | None = None,
                 seed: int = 0, window: bool = False, negatives: int = 0,
                 behaviours: int = 0, targets: torch.Tensor | None = None) -> Batch:
    """A batch of ``len(lengths)`` rows of random items in 1..``n_items``.

    Args:
        lengths: real items of each row.
        width: columns (default: the longest row).
        seed: seed of every draw (items, then targets, then negatives, then behaviours).
        window: a target per position (``instances="window"``) instead of one per row.
        negatives: uniform negatives per target (0 = none).
        behaviours: behaviour ids drawn in 1..``behaviours`` (0 = no behaviours).
        targets: the targets to use instead of random ones.
    """
    g = torch.Generator().manual_seed(seed)
    lengths_ = torch.tensor(list(lengths))
    B, width = len(lengths_), width or int(lengths_.max())
    real = torch.arange(width)[None, :] < lengths_[:, None]
    items = torch.where(real, torch.randint(1, n_items + 1, (B, width), generator=g), 0)
    rows = torch.where(real, torch.arange(B)[:, None] * width + torch.arange(width), -1)
    if targets is None:
        targets = torch.randint(1, n_items + 1, (B, width) if window else (B,), generator=g)
        if window:
            targets = torch.where(real, targets, 0)
    batch = Batch(items=items, lengths=lengths_, targets=targets, users=torch.arange(B),
                  rows=rows, instances="window" if window else "prefix")
    if negatives:
        batch = batch.with_negatives(uniform_negatives(targets, n_items, negatives, g))
    if behaviours:
        ids = torch.randint(1, behaviours + 1, (B, width), generator=g)
        batch = replace(batch, behaviours=torch.where(real, ids, 0))
    return batch
