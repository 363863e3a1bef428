"""Noise scores: one number in [0, 1] per interaction, higher = more likely noise.

Two sources, one interface (:func:`score_log`):

* a model's own judgement, when it implements ``noise_scores(batch) -> (B, L)`` (the denoisers:
  soft weights, hard masks), read for every interaction from windows covering the log;
* the model-agnostic **surprise baseline**, for any trained next-item model: the interaction at
  row r is scored by how far down the model ranks its item given the prefix before it,
  ``(rank - 1) / (n_items - 1)`` (1 - its rank percentile; ties by item id as in
  :mod:`denoiserec.metrics`). A user's first interaction has no prefix and gets 0.5.

Every denoiser should beat the surprise baseline of its own backbone at finding noise.
"""

from __future__ import annotations

import numpy as np
import torch

from denoiserec.data.batches import Batcher, strided_windows
from denoiserec.data.log import Interactions
from denoiserec.metrics import target_ranks
from denoiserec.models.base import SequentialRecommender

NO_PREFIX_SCORE = 0.5


def has_native_scores(model: SequentialRecommender) -> bool:
    """A denoiser judges items itself (``SequentialRecommender.denoiser``)."""
    return model.denoiser


@torch.no_grad()
def surprise_scores(model: SequentialRecommender, log: Interactions, max_len: int,
                    device: torch.device | str = "cpu", batch_size: int = 2048) -> np.ndarray:
    """(N,) surprise of every interaction given its prefix (see the module docstring)."""
    model.eval()
    batcher = Batcher(log, max_len, torch.device(device))
    first = np.zeros(log.n_interactions, dtype=bool)
    first[log.offsets[:-1][log.lengths > 0]] = True
    rows = torch.as_tensor(np.flatnonzero(~first), device=batcher.device)
    users = torch.as_tensor(log.row_users[~first], device=batcher.device)
    scores = np.full(log.n_interactions, NO_PREFIX_SCORE, dtype=np.float64)
    out = []
    for start in range(0, len(rows), batch_size):
        batch = batcher.prefix(users[start:start + batch_size], rows[start:start + batch_size])
        logits = model.score_all(batch).float()
        logits[:, 0] = -torch.inf
        ranks = target_ranks(logits, batch.targets)
        out.append(((ranks - 1).double() / max(1, log.n_items - 1)).cpu())
    if out:
        scores[~first] = torch.cat(out).numpy()
    return scores


@torch.no_grad()
def native_scores(model: SequentialRecommender, log: Interactions, max_len: int,
                  device: torch.device | str = "cpu", batch_size: int = 1024) -> np.ndarray:
    """(N,) the model's own noise score of every interaction, from windows tiling each user."""
    model.eval()
    batcher = Batcher(log, max_len, torch.device(device))
    # windows of max_len rows tiling every row of each user, cut from the end (the tiler of
    # the fast mode, over rows instead of targets)
    users, ends, _ = strided_windows(log.offsets[:-1] - 1, log.offsets[1:], max_len)
    scores = np.full(log.n_interactions, np.nan)
    for start in range(0, len(users), batch_size):
        batch = batcher.history(torch.as_tensor(users[start:start + batch_size]),
                                torch.as_tensor(ends[start:start + batch_size]))
        values = model.noise_scores(batch)  # (B, L)
        real = batch.rows >= 0
        scores[batch.rows[real].cpu().numpy()] = values[real].double().cpu().numpy()
    return scores


def score_log(model: SequentialRecommender, log: Interactions, max_len: int,
              device: torch.device | str = "cpu", source: str = "auto") -> np.ndarray:
    """Noise scores of every interaction of ``log``: ``native``, ``surprise`` or ``auto``
    (native when the model has them)."""
    if source == "native" or (source == "auto" and has_native_scores(model)):
        return native_scores(model, log, max_len, device)
    return surprise_scores(model, log, max_len, device)
