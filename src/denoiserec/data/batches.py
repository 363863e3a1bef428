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
from typing import NamedTuple

import numpy as np
import torch

from denoiserec.data.log import Interactions

INSTANCES = ("prefix", "window")  # what a training batch's rows are (``Batch.instances``)


@dataclass(frozen=True)
class Batch:
    """What a model sees.

    Attributes:
        items: (B, L) input item ids, right-padded with 0.
        lengths: (B,) number of real items in each row (>= 1).
        targets: (B,) next item after the input (``instances == "prefix"``), or (B, L) the
            next item of every input position (``instances == "window"``; 0 where none).
        users: (B,) user index.
        rows: (B, L) log row of every input item, -1 for padding (to attach noise scores).
        behaviours: (B, L) behaviour ids (0 on padding), or None.
        target_behaviours: (B,) or (B, L) behaviour of the target(s), or None.
        negatives: sampled negative ids for BPR, (B, n) or (B, L, n), or None.
        instances: ``prefix`` (one target per row, scored at its last position: every
            evaluation batch, and training under ``train.instances=prefix``) or ``window``
            (a target per position: ``Batcher.window``, the fast mode); a Cloze window
            (``Batcher.history``) is ``prefix``-shaped and carries no targets.
    """

    items: torch.Tensor
    lengths: torch.Tensor
    targets: torch.Tensor
    users: torch.Tensor
    rows: torch.Tensor
    behaviours: torch.Tensor | None = None
    target_behaviours: torch.Tensor | None = None
    negatives: torch.Tensor | None = None
    instances: str = "prefix"

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
                     target_behaviours=self._behaviours_at(target_rows), instances="window")


class Windows(NamedTuple):
    """All-position training windows of one epoch, for ``Batcher.window(users, ends)``.

    Attributes:
        users: (n,) user of each window.
        ends: (n,) exclusive end row of each window: it predicts rows
            ``max(start + 1, end - max_len) .. end - 1``.
        counted: (n,) how many of the window's targets it *counts*: its last ``counted``
            positions (see :func:`strided_windows`; :func:`counted_mask` turns it into a mask).
    """

    users: np.ndarray
    ends: np.ndarray
    counted: np.ndarray


def strided_windows(starts: np.ndarray, train_end: np.ndarray, max_len: int,
                    stride: int | None = None,
                    rng: np.random.Generator | None = None) -> Windows:
    """Windows of ``max_len`` targets cut from the end of each training region every ``stride``.

    User ``u`` (training targets: rows ``start+1 .. train_end-1``) gets windows ending at
    ``train_end - o - k * stride`` for k = 0, 1, ... while the window still holds a target,
    preceded by one ending at ``train_end`` when ``o > 0``. The offset ``o`` is 0 without
    ``rng``, else drawn per user from ``rng`` uniformly in ``[0, stride)`` (draw a new
    generator, e.g. seeded by (seed, epoch), every epoch so that cut points move). With
    ``stride < max_len`` windows overlap and a target is seen at several context lengths.

    Every target is in at least one window and no window reaches ``train_end`` or beyond
    (stride <= max_len). ``stride = max_len`` without ``rng`` gives exactly
    :func:`window_ends` (non-overlapping windows, each target once).

    Counting once: each target is *counted* in exactly one window, the one where it has the
    longest context, which is the covering window with the smallest end. For all but a user's
    lowest window these are the targets at or after the next lower window's end, i.e. its last
    ``end - next_end`` positions (the last ``o`` of the ``train_end`` window, the last
    ``stride`` of grid windows); the lowest window counts all its targets. A counted target
    therefore has at least ``max_len - stride + 1`` items of context (fewer only near the
    sequence start): with ``stride < max_len`` the other views add short-context gradients
    only if the loss uses them; ``stride = max_len`` with an offset varies the counted context
    length over ``1 .. max_len`` across epochs at the cost of one extra window per user.

    Returns:
        :class:`Windows` ``(users, ends, counted)``, users in order, ends decreasing per user.
    """
    stride = max_len if stride is None else stride
    if not 1 <= stride <= max_len:
        raise ValueError(f"stride must be in 1..max_len={max_len}, got {stride}")
    starts = np.asarray(starts, dtype=np.int64)
    train_end = np.asarray(train_end, dtype=np.int64)
    n_users = len(starts)
    n_targets = np.maximum(train_end - starts - 1, 0)
    offset = (np.zeros(n_users, dtype=np.int64) if rng is None
              else rng.integers(0, stride, size=n_users, dtype=np.int64))
    # grid ends train_end - o - k*stride >= start + 2 (at least one target): k <= (n - o - 1)/s
    n_grid = np.where(n_targets > offset, (n_targets - offset - 1) // stride + 1, 0)
    top = ((offset > 0) & (n_targets > 0)).astype(np.int64)  # the window ending at train_end
    n_windows = n_grid + top
    users = np.repeat(np.arange(n_users), n_windows)
    last = np.cumsum(n_windows)
    within = np.arange(last[-1] if n_users else 0) - np.repeat(last - n_windows, n_windows)
    k = within - top[users]  # grid index; -1 is the top window
    ends = np.where(k < 0, train_end[users], train_end[users] - offset[users] - k * stride)
    counted = ends - np.append(ends[1:], 0)  # targets from the next (lower) window's end on
    lowest = last[n_windows > 0] - 1
    counted[lowest] = ends[lowest] - starts[users[lowest]] - 1  # all its targets
    return Windows(users, ends, counted)


def counted_mask(lengths: torch.Tensor, counted: torch.Tensor, width: int) -> torch.Tensor:
    """(B, width) True on the positions a window counts: its last ``counted`` real positions.

    ``lengths`` are the windows' target counts (``Batch.lengths`` of ``Batcher.window``) and
    ``counted`` the matching entries of :attr:`Windows.counted`.
    """
    positions = torch.arange(width, device=lengths.device)[None, :]
    return (positions < lengths[:, None]) & (positions >= (lengths - counted)[:, None])


def window_ends(starts: np.ndarray, train_end: np.ndarray, max_len: int) -> tuple[np.ndarray, ...]:
    """Non-overlapping windows covering every training target once, cut from the end.

    A user whose training targets are rows ``start+1 .. train_end-1`` gets windows ending at
    ``train_end, train_end - max_len, ...``; each window predicts up to ``max_len`` targets.

    Returns:
        (users, ends) of the windows.
    """
    users, ends, _ = strided_windows(starts, train_end, max_len)
    return users, ends
