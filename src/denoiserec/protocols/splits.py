"""The leave-one-out mechanics the protocols split with (``protocols/protocol.py`` says which
protocol uses which): RecBole's over prefix instances, the target behaviour's, and the fixed
sampled negatives. Flat arrays in, flat arrays out; no protocol settings object.
"""

from __future__ import annotations

import numpy as np

from denoiserec.data.datasets import KNOWN
from denoiserec.data.log import Interactions
from denoiserec.errors import ProtocolError


def leave_one_out(log: Interactions) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """RecBole's leave-one-out over prefix instances: (train_rows, train_end, valid, test)."""
    starts, ends = log.offsets[:-1], log.offsets[1:]
    n_instances = np.maximum(ends - starts - 1, 0)
    held_out = np.minimum(2, np.maximum(n_instances - 1, 0))  # RecBole: min(2, instances - 1)
    train_end = ends - held_out
    has_test = held_out >= 1
    has_valid = held_out >= 2
    test = (ends - 1)[has_test]
    valid = (ends - 2)[has_valid]
    first_target = starts + 1
    counts = np.maximum(train_end - first_target, 0)
    train_rows = np.repeat(first_target - np.cumsum(np.concatenate([[0], counts[:-1]])), counts)
    train_rows = train_rows + np.arange(counts.sum())
    return train_rows, train_end, valid, test


def protocol_negatives(log: Interactions, users: np.ndarray, n: int, kind: str,
                       seed: int) -> np.ndarray:
    """(len(users), n) items each user never interacted with, fixed by ``seed``.

    Sampling with replacement across draws is avoided: collisions with the user's items or with
    another negative of the same row are redrawn (vectorised rejection, repeated until clean).
    """
    if n >= log.n_items:
        raise ProtocolError(f"sampled: n_negatives={n} must be below the number of items "
                            f"({log.n_items})")
    rng = np.random.default_rng(seed)
    counts = np.bincount(log.items, minlength=log.n_items + 1).astype(np.float64)
    counts[0] = 0
    drawable = np.ones(log.n_items + 1, dtype=bool) if kind == "uniform" else counts > 0
    drawable[0] = False
    width = log.n_items + 1
    seen = np.unique(log.row_users * width + log.items)  # sorted (user, item) keys
    seen_drawable = np.bincount(seen[drawable[seen % width]] // width, minlength=log.n_users)
    short = np.flatnonzero(int(drawable.sum()) - seen_drawable[users] < n)
    if len(short):  # rejection sampling would never end for these users
        user = log.user_tokens[users[short[0]]]
        raise ProtocolError(f"sampled: user {user} (and {len(short) - 1} more) has fewer than "
                            f"n_negatives={n} items left to draw; lower protocol.n_negatives")
    weights = counts / counts.sum() if kind == "popularity" else None
    if kind == "uniform":
        weights = np.r_[0.0, np.full(log.n_items, 1.0 / log.n_items)]
    elif kind != "popularity":
        raise ProtocolError(f"sampled: negatives must be 'uniform' or 'popularity', got '{kind}'")
    cumulative = np.cumsum(weights)
    negatives = np.searchsorted(cumulative, rng.random((len(users), n)), side="right")
    while True:
        sorted_rows = np.sort(negatives, axis=1)
        duplicate = np.zeros_like(negatives, dtype=bool)
        duplicate[:, 1:] = sorted_rows[:, 1:] == sorted_rows[:, :-1]
        order = np.argsort(negatives, axis=1, kind="stable")
        bad = np.zeros_like(duplicate)
        np.put_along_axis(bad, order, duplicate, axis=1)
        keys = users[:, None] * width + negatives
        position = np.searchsorted(seen, keys).clip(max=len(seen) - 1)
        bad |= seen[position] == keys
        if not bad.any():
            return negatives
        negatives[bad] = np.searchsorted(cumulative, rng.random(int(bad.sum())), side="right")


def target_behaviour_rows(log: Interactions, tokens: tuple[str, ...]) -> np.ndarray:
    """(N,) True on the rows of the target behaviour (raw ``tokens``) that have an input (not
    a user's first)."""
    if log.behaviours is None or log.behaviour_tokens is None:
        raise ProtocolError(f"{log.name}: the target protocol needs behaviours; the log has none")
    ids = [b for b, token in enumerate(log.behaviour_tokens) if token in tokens]
    if not ids:
        known = KNOWN.get(log.name)
        hint = (f" (its buys: --set protocol.target_behaviour={known.buy_tokens})"
                if known is not None and known.buy_tokens else "")
        raise ProtocolError(f"{log.name}: no behaviour {','.join(tokens)} "
                            f"(the log has {', '.join(log.behaviour_tokens)}); set "
                            f"protocol.target_behaviour{hint}")
    is_target = np.isin(log.behaviours, ids)
    is_target[log.offsets[:-1][log.lengths > 0]] = False
    return is_target


def target_leave_one_out(log: Interactions, tokens: tuple[str, ...], shipped_split: bool,
                         train_targets: str
                         ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Leave-one-out on the target behaviour (raw ``tokens``): (train_rows, train_end, valid,
    test), see ``TargetProtocol`` (END4Rec spec §1.3); ``shipped_split`` and
    ``train_targets`` are the protocol settings of those names."""
    rows = np.flatnonzero(target_behaviour_rows(log, tokens))  # grouped by user, in order
    users = log.row_users[rows]
    count = np.bincount(users, minlength=log.n_users)
    shipped = log.test_users is not None and shipped_split and log.test_users.any()
    test_only = log.test_users if shipped else np.zeros(log.n_users, dtype=bool)
    held = np.minimum(2, np.maximum(count - 1, 0))  # RecBole's rule, on target instances
    n_test = np.where(shipped, test_only & (count >= 1), held >= 1).astype(np.int64)
    n_valid = np.where(shipped, ~test_only & (count >= 2), held == 2).astype(np.int64)
    from_end = count[users] - 1 - (np.arange(len(rows)) - (np.cumsum(count) - count)[users])
    test = rows[(from_end == 0) & (n_test[users] == 1)]
    valid = rows[(from_end == n_test[users]) & (n_valid[users] == 1)]
    n_held = n_test + n_valid
    first_held = from_end == n_held[users] - 1
    starts, ends = log.offsets[:-1], log.offsets[1:]
    train_end = ends.copy()
    train_end[users[first_held]] = rows[first_held]
    train_end[test_only] = starts[test_only]
    if train_targets == "target":
        train_rows = rows[(from_end >= n_held[users]) & ~test_only[users]]
    else:  # every row with an input before the first held-out target
        in_train = np.arange(log.n_interactions) < train_end[log.row_users]
        in_train[starts[log.lengths > 0]] = False
        train_rows = np.flatnonzero(in_train)
    return train_rows, train_end, valid, test
