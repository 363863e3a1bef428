"""Batches: tensors cut from the flat log with index arithmetic (no per-sample objects).

An instance is ``(user, end)``: its input is the at most ``max_len`` rows before ``end`` of the
user's sequence, stored **right-padded** as in RecBole (oldest item at position 0, zeros after
``length``), so that learned position embeddings count from the oldest item of the window.

A batch is only as wide as its longest row: with right padding the columns cut off are padding
in every row, which attention masks and gathers ignore, so the numbers are the same (up to
float summation order) and short-sequence data (Amazon: median length 6) trains much faster.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import torch

from denoiserec.data.log import Interactions


@dataclass(frozen=True)
class Batch:
    """What a model sees.

    Attributes:
        items: (B, L) input item ids, right-padded with 0.
        lengths: (B,) number of real items in each row (>= 1).
        targets: (B,) next item after the input, or (B, L) the next item of every input
            position in window mode (0 where there is none).
        users: (B,) user index.
        rows: (B, L) log row of every input item, -1 for padding (to attach noise scores).
        behaviours: (B, L) behaviour ids (0 on padding), or None.
        target_behaviours: (B,) or (B, L) behaviour of the target(s), or None.
        negatives: sampled negative ids for BPR, (B, n) or (B, L, n), or None.
    """

    items: torch.Tensor
    lengths: torch.Tensor
    targets: torch.Tensor
    users: torch.Tensor
    rows: torch.Tensor
    behaviours: torch.Tensor | None = None
    target_behaviours: torch.Tensor | None = None
    negatives: torch.Tensor | None = None

    def __len__(self) -> int:
        return self.items.shape[0]

    @property
    def padding_mask(self) -> torch.Tensor:
        """(B, L) True on real items."""
        return self.rows >= 0

    def with_negatives(self, negatives: torch.Tensor) -> Batch:
        return replace(self, negatives=negatives)


class Batcher:
    """Cuts batches out of one log held as tensors on ``device``."""

    def __init__(self, log: Interactions, max_len: int, device: torch.device) -> None:
        self.max_len = max_len
        self.device = device
        self.items = torch.tensor(log.items, device=device)  # copies: the log stays read-only
        self.starts = torch.tensor(log.offsets[:-1], device=device)
        self.behaviours = (None if log.behaviours is None
                           else torch.tensor(log.behaviours, device=device))
        self.n_items = log.n_items

    def _inputs(self, users: torch.Tensor, ends: torch.Tensor) -> tuple[torch.Tensor, ...]:
        starts = self.starts[users]
        lengths = torch.clamp(ends - starts, max=self.max_len)
        width = max(int(lengths.max()), 1) if len(lengths) else 1
        positions = torch.arange(width, device=self.device)
        real = positions[None, :] < lengths[:, None]
        rows = torch.where(real, (ends - lengths)[:, None] + positions[None, :], -1)
        items = torch.where(real, self.items[rows.clamp(min=0)], 0)
        return items, lengths, rows, real

    def _behaviours_at(self, rows: torch.Tensor) -> torch.Tensor | None:
        if self.behaviours is None:
            return None
        return torch.where(rows >= 0, self.behaviours[rows.clamp(min=0)], 0)

    def prefix(self, users: torch.Tensor, targets: torch.Tensor) -> Batch:
        """Instances predicting row ``targets`` from the rows before it."""
        items, lengths, rows, _ = self._inputs(users, targets)
        return Batch(items=items, lengths=lengths, targets=self.items[targets], users=users,
                     rows=rows, behaviours=self._behaviours_at(rows),
                     target_behaviours=self._behaviours_at(targets))

    def history(self, users: torch.Tensor, ends: torch.Tensor) -> Batch:
        """The rows before ``ends`` as inputs, without a target (``ends`` may be a user's end;
        ``targets`` are 0)."""
        items, lengths, rows, _ = self._inputs(users, ends)
        return Batch(items=items, lengths=lengths, targets=torch.zeros_like(lengths),
                     users=users, rows=rows, behaviours=self._behaviours_at(rows))

    def window(self, users: torch.Tensor, ends: torch.Tensor) -> Batch:
        """Windows whose targets are rows ``[start + 1, end)`` within the last ``max_len + 1``."""
        items, lengths, rows, real = self._inputs(users, ends - 1)
        target_rows = torch.where(real, rows + 1, -1)
        targets = torch.where(real, self.items[target_rows.clamp(min=0)], 0)
        return Batch(items=items, lengths=lengths, targets=targets, users=users, rows=rows,
                     behaviours=self._behaviours_at(rows),
                     target_behaviours=self._behaviours_at(target_rows))


def window_ends(starts: np.ndarray, train_end: np.ndarray, max_len: int) -> tuple[np.ndarray, ...]:
    """Non-overlapping windows covering every training target once, cut from the end.

    A user whose training targets are rows ``start+1 .. train_end-1`` gets windows ending at
    ``train_end, train_end - max_len, ...``; each window predicts up to ``max_len`` targets.

    Returns:
        (users, ends) of the windows.
    """
    n_targets = np.maximum(train_end - starts - 1, 0)
    n_windows = -(-n_targets // max_len)
    users = np.repeat(np.arange(len(starts)), n_windows)
    first = np.cumsum(n_windows) - n_windows
    within = np.arange(n_windows.sum()) - np.repeat(first, n_windows)
    return users, train_end[users] - within * max_len
