"""Noise injection with ground truth: a noisy copy of a log's training part, and its labels.

Only each user's *training* region is touched (the rows before its valid and test targets, as
the leave-one-out split of :mod:`denoiserec.protocols` defines them). The valid and test
targets stay where they are, and evaluation inputs are taken from the clean log (see
``protocols.split(log, protocol, eval_log)``), so no true item of an evaluation instance is
ever altered: the noise only corrupts what the model is trained on.

Strategies (``k`` noisy interactions per user: ``round(ratio * n_train)`` with ``per="sequence"``,
or ``round(ratio * total)`` positions spread uniformly over all training rows with
``per="global"``; with ``users < 1`` only that share of the users, drawn with the seed, is
corrupted, the ratio holding within their sequences, and the others stay clean, so that noisy
and clean sequences can be told apart):

* ``replace``: k training items are replaced by uniformly random other items (ATJT).
* ``insert``: k uniformly random items are inserted at random positions (HSD, MGSD-WSS).
* ``popular``: k items drawn by popularity are inserted (accidental clicks on trending items).
* ``off-interest``: k items far from the user's interests are inserted: for each slot, the
  least similar of ``candidates`` uniform draws, similarity being the cosine between the item
  and the mean of the user's training items in a low-rank (SVD) embedding of the user-item
  matrix.

The returned log carries ``is_noise`` (planted noise of the synthetic generator included).
Inserted rows get the timestamp of the row that follows them.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, replace

import numpy as np
import torch

from denoiserec.config import check_choice, check_range
from denoiserec.data.log import Interactions
from denoiserec.protocols import leave_one_out

STRATEGIES = ("replace", "insert", "popular", "off-interest")
PER = ("sequence", "global")


@dataclass(frozen=True)
class NoiseConfig:
    """What noise to inject into the training sequences."""

    kind: str = "insert"
    """replace | insert | popular | off-interest."""
    ratio: float = 0.0
    """Noisy interactions relative to the clean training interactions (0 = none)."""
    per: str = "sequence"
    """``sequence``: the ratio holds in every sequence; ``global``: over the whole log."""
    users: float = 1.0
    """Share of the users whose training sequences are corrupted (the others stay clean)."""
    seed: int = 0
    """Seed of positions and items."""
    candidates: int = 20
    """``off-interest`` only: uniform draws per slot, the least similar one is kept."""
    embedding_dim: int = 16
    """``off-interest`` only: rank of the SVD item embedding."""

    def __post_init__(self) -> None:
        check_choice("noise.kind", self.kind, STRATEGIES)
        check_choice("noise.per", self.per, PER)
        check_range("noise.users", self.users, 0, 1, low_open=True)
        # replacing more than every training item is impossible; insertion may double it
        high = 1.0 if self.kind == "replace" else 10.0
        check_range(f"noise.ratio (kind {self.kind})", self.ratio, 0, high, high_open=high > 1)
        check_range("noise.seed", self.seed, 0)
        check_range("noise.candidates", self.candidates, 1)
        check_range("noise.embedding_dim", self.embedding_dim, 1)


def inert_settings(noise: NoiseConfig | None) -> list[str]:
    """The noise settings given (not at their default) that do nothing: every one without
    ``noise.ratio`` > 0, the ``off-interest`` ones under another kind."""
    if noise is None:
        return []
    default = NoiseConfig()
    given = [f.name for f in dataclasses.fields(noise)
             if getattr(noise, f.name) != getattr(default, f.name)]
    if noise.ratio == 0:
        return [f"noise.{name} does nothing without noise.ratio > 0" for name in given]
    return [f"noise.{name} is read by noise.kind=off-interest only, not {noise.kind}"
            for name in given if name in ("candidates", "embedding_dim")
            and noise.kind != "off-interest"]


def _noise_counts(n_train: np.ndarray, config: NoiseConfig, rng: np.random.Generator) -> np.ndarray:
    """Noisy interactions per user (0 for the users left clean)."""
    users = np.arange(len(n_train))
    if config.users < 1:
        chosen = int(round(config.users * len(n_train)))
        users = np.sort(rng.permutation(len(n_train))[:chosen])
    counts = np.zeros(len(n_train), dtype=np.int64)
    if config.per == "sequence":
        counts[users] = np.rint(config.ratio * n_train[users])
        return counts
    total = int(round(config.ratio * n_train[users].sum()))
    owners = np.repeat(users, n_train[users])
    return np.bincount(rng.choice(owners, size=total, replace=True), minlength=len(n_train))


def _ranks_within(groups: np.ndarray, keys: np.ndarray) -> np.ndarray:
    """Rank (0-based) of each element by ``keys`` inside its group (groups sorted ascending)."""
    order = np.lexsort((keys, groups))
    starts = np.searchsorted(groups[order], groups[order], side="left")
    ranks = np.empty(len(groups), dtype=np.int64)
    ranks[order] = np.arange(len(groups)) - starts
    return ranks


def _item_embedding(log: Interactions, dim: int, seed: int) -> np.ndarray:
    """(n_items + 1, dim) unit-norm item factors of the binary user-item matrix (randomised SVD)."""
    rows = torch.as_tensor(log.row_users.copy())
    cols = torch.as_tensor(log.items.copy())
    matrix = torch.sparse_coo_tensor(torch.stack([rows, cols]), torch.ones(len(rows)),
                                     (log.n_users, log.n_items + 1),
                                     check_invariants=True).coalesce()
    generator = torch.Generator().manual_seed(seed)
    sketch = torch.randn(log.n_users, dim + 8, generator=generator)
    basis, _ = torch.linalg.qr(torch.sparse.mm(matrix.t(), sketch))  # (items, dim + 8)
    projected = torch.sparse.mm(matrix, basis)  # (users, dim + 8)
    _, _, vt = torch.linalg.svd(projected, full_matrices=False)
    factors = basis @ vt.T[:, :dim]
    return torch.nn.functional.normalize(factors, dim=1).numpy()


def _noise_items(log: Interactions, owners: np.ndarray, train_rows: np.ndarray,
                 config: NoiseConfig, rng: np.random.Generator) -> np.ndarray:
    """An item for every noisy slot, by strategy (``owners``: the slot's user)."""
    n = len(owners)
    if config.kind in ("insert", "replace"):
        return rng.integers(1, log.n_items + 1, n)
    if config.kind == "popular":
        counts = np.bincount(log.items, minlength=log.n_items + 1).astype(np.float64)
        return rng.choice(log.n_items + 1, size=n, p=counts / counts.sum())
    factors = _item_embedding(log, config.embedding_dim, config.seed)
    users = log.row_users[train_rows]
    profile = np.zeros((log.n_users, factors.shape[1]))
    np.add.at(profile, users, factors[log.items[train_rows]])
    profile /= np.maximum(np.linalg.norm(profile, axis=1, keepdims=True), 1e-12)
    candidates = rng.integers(1, log.n_items + 1, (n, config.candidates))
    similarity = np.einsum("nkd,nd->nk", factors[candidates], profile[owners])
    return candidates[np.arange(n), similarity.argmin(1)]


def _copy_sources(size: int, clean_slots: np.ndarray, train_rows: np.ndarray,
                  held_new: np.ndarray, held_rows: np.ndarray, old_users: np.ndarray,
                  new_users: np.ndarray) -> np.ndarray:
    """The old row whose timestamp/behaviour each new row takes: itself for original rows, the
    next original row of the same user for an inserted one (the previous one at the end)."""
    source = np.full(size, -1, dtype=np.int64)
    source[clean_slots] = train_rows
    source[held_new] = held_rows
    last = np.iinfo(np.int64).max
    following = np.minimum.accumulate(np.where(source >= 0, source, last)[::-1])[::-1]
    preceding = np.maximum.accumulate(source)
    usable = following < last
    usable[usable] &= old_users[following[usable]] == new_users[usable]
    return np.where(source >= 0, source, np.where(usable, following, preceding))


def inject(log: Interactions, config: NoiseConfig) -> Interactions:
    """A noisy copy of ``log`` (see the module docstring); ``log`` itself is not changed."""
    rng = np.random.default_rng(config.seed)
    _, train_end, _, _ = leave_one_out(log)
    starts, ends = log.offsets[:-1], log.offsets[1:]
    n_train = train_end - starts
    k = np.minimum(_noise_counts(n_train, config, rng), n_train if config.kind == "replace"
                   else np.iinfo(np.int64).max)
    labels = (np.zeros(log.n_interactions, dtype=bool) if log.is_noise is None
              else log.is_noise.copy())
    row_users = log.row_users
    in_train = np.arange(log.n_interactions) < train_end[row_users]
    train_rows = np.flatnonzero(in_train)

    if config.kind == "replace":
        ranks = _ranks_within(row_users[train_rows], rng.random(len(train_rows)))
        chosen = train_rows[ranks < k[row_users[train_rows]]]
        items = log.items.copy()
        new = _noise_items(log, row_users[chosen], train_rows, config, rng)
        clash = new == items[chosen]
        while clash.any():  # a replacement must change the item
            new[clash] = rng.integers(1, log.n_items + 1, int(clash.sum()))
            clash = new == items[chosen]
        items[chosen] = new
        labels[chosen] = True
        return replace(log, items=items, is_noise=labels)

    # insertion: every user's training region grows by k slots, k of them (chosen at random)
    # are noise, the others receive the original training items in order
    slots_per_user = n_train + k
    slot_users = np.repeat(np.arange(log.n_users), slots_per_user)
    is_noise_slot = _ranks_within(slot_users, rng.random(len(slot_users))) < k[slot_users]
    new_lengths = ends - starts + k
    new_offsets = np.concatenate([[0], np.cumsum(new_lengths)]).astype(np.int64)
    slot_rows = new_offsets[slot_users] + (np.arange(len(slot_users))
                                           - np.repeat(np.cumsum(slots_per_user)
                                                       - slots_per_user, slots_per_user))
    items = np.empty(new_offsets[-1], dtype=np.int64)
    new_labels = np.zeros(new_offsets[-1], dtype=bool)
    clean_slots = slot_rows[~is_noise_slot]
    items[clean_slots] = log.items[train_rows]
    new_labels[clean_slots] = labels[train_rows]
    noise_slots = slot_rows[is_noise_slot]
    items[noise_slots] = _noise_items(log, slot_users[is_noise_slot], train_rows, config, rng)
    new_labels[noise_slots] = True
    held_rows = np.flatnonzero(~in_train)  # valid/test targets keep their order at the end
    held_new = held_rows + k[row_users[held_rows]] + (new_offsets[:-1] - starts)[
        row_users[held_rows]]
    items[held_new] = log.items[held_rows]
    new_labels[held_new] = labels[held_rows]

    timestamps = behaviours = None
    if log.timestamps is not None or log.behaviours is not None:
        source = _copy_sources(len(items), clean_slots, train_rows, held_new, held_rows,
                               row_users, np.repeat(np.arange(log.n_users), new_lengths))
        if log.timestamps is not None:
            timestamps = log.timestamps[source]
        if log.behaviours is not None:
            behaviours = log.behaviours[source]
    return replace(log, offsets=new_offsets, items=items, timestamps=timestamps,
                   behaviours=behaviours, is_noise=new_labels)
