"""RawLog -> Interactions: threshold, duplicates, iterated k-core, time order, id remapping.

The order of the steps follows RecBole 1.2.1 (filter, then remap, then sort), so that with the
default settings a RecBole atomic file gives exactly RecBole's sequences.

Time order and ties: rows are sorted by (user, time key) with a *stable* sort, so rows with the
same key keep their file order. With ``time_order="recbole"`` the key is RecBole's min-max
normalised timestamp stored as float32, which merges timestamps about a second apart on long
logs (148 extra ties on ml-100k); ``"exact"`` sorts on the raw float64 timestamps. Logs without
timestamps keep the file order.

Ids are remapped in order of first appearance in the (filtered) file, as ``pandas.factorize``
does in RecBole: item 0 is padding, real items are 1..n_items.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from denoiserec.data.log import PAD_TOKEN, Interactions, RawLog
from denoiserec.errors import DataError

DUPLICATE_POLICIES = ("keep", "first", "last")
TIME_ORDERS = ("recbole", "exact")


def time_key(timestamps: np.ndarray, time_order: str) -> np.ndarray:
    """The sort key of each row: raw seconds, or RecBole's float32 min-max normalisation."""
    if time_order == "exact":
        return timestamps.astype(np.float64)
    low, high = float(timestamps.min()), float(timestamps.max())
    span = high - low if high > low else 1.0
    return ((timestamps.astype(np.float64) - low) / span).astype(np.float32)


def k_core(users: np.ndarray, items: np.ndarray, user_core: int, item_core: int) -> np.ndarray:
    """Boolean mask of rows surviving the iterated user/item k-core filter."""
    keep = np.ones(len(users), dtype=bool)
    while True:
        user_counts = np.bincount(users[keep], minlength=users.max() + 1)
        item_counts = np.bincount(items[keep], minlength=items.max() + 1)
        drop = keep & ((user_counts[users] < user_core) | (item_counts[items] < item_core))
        if not drop.any():
            return keep
        keep &= ~drop


def _dedup(users: np.ndarray, items: np.ndarray, order: np.ndarray, policy: str) -> np.ndarray:
    """Positions (into ``order``) to keep under the duplicate policy, rows taken in time order."""
    pairs = users[order].astype(np.int64) * (int(items.max()) + 1) + items[order]
    if policy == "first":
        _, first = np.unique(pairs, return_index=True)
        return np.sort(first)
    _, last_from_end = np.unique(pairs[::-1], return_index=True)
    return np.sort(len(pairs) - 1 - last_from_end)


def build_interactions(
    raw: RawLog,
    *,
    name: str = "",
    rating_threshold: float | None = None,
    user_core: int = 0,
    item_core: int = 0,
    duplicates: str = "keep",
    time_order: str = "recbole",
) -> Interactions:
    """Preprocess a raw log into time-ordered per-user sequences (see the module docstring)."""
    if duplicates not in DUPLICATE_POLICIES:
        raise DataError(f"duplicates must be one of {DUPLICATE_POLICIES}, got '{duplicates}'")
    if time_order not in TIME_ORDERS:
        raise DataError(f"time_order must be one of {TIME_ORDERS}, got '{time_order}'")
    if len(raw) == 0:
        raise DataError(f"{raw.source}: the log has no interactions")
    keep = np.ones(len(raw), dtype=bool)
    if rating_threshold is not None:
        if raw.ratings is None:
            raise DataError(f"{raw.source}: rating_threshold is set but the log has no ratings")
        keep &= raw.ratings >= rating_threshold
    user_codes = pd.factorize(raw.users)[0]
    item_codes = pd.factorize(raw.items)[0]
    rows = np.flatnonzero(keep)
    if user_core > 1 or item_core > 1:
        rows = rows[k_core(user_codes[rows], item_codes[rows], user_core, item_core)]
    if len(rows) == 0:
        raise DataError(f"{raw.source}: no interactions left after filtering")

    users, user_tokens = pd.factorize(raw.users[rows])
    items, item_tokens = pd.factorize(raw.items[rows])
    keys = [np.arange(len(rows))]
    timestamps = raw.timestamps[rows] if raw.timestamps is not None else None
    if timestamps is not None:
        keys.append(time_key(timestamps, time_order))
    keys.append(users)
    order = np.lexsort(keys)  # by user, then time key, then file row: a stable sort
    if duplicates != "keep":
        order = order[_dedup(users, items, order, duplicates)]

    behaviours, behaviour_tokens = None, None
    if raw.behaviours is not None:
        names = raw.behaviours[rows].astype(str)
        vocabulary = np.unique(names)
        behaviour_tokens = tuple(str(token) for token in vocabulary)
        behaviours = np.searchsorted(vocabulary, names[order]).astype(np.int64)
    counts = np.bincount(users[order], minlength=len(user_tokens))
    test_users = None
    if raw.test_rows is not None:
        test_users = np.bincount(users, weights=raw.test_rows[rows],
                                 minlength=len(user_tokens)) > 0
    return Interactions(
        offsets=np.concatenate([[0], np.cumsum(counts)]).astype(np.int64),
        items=(items[order] + 1).astype(np.int64),
        user_tokens=np.asarray(user_tokens, dtype=object),
        item_tokens=np.asarray([PAD_TOKEN, *item_tokens], dtype=object),
        timestamps=None if timestamps is None else timestamps[order].astype(np.float64),
        behaviours=behaviours,
        behaviour_tokens=behaviour_tokens,
        test_users=test_users,
        name=name or raw.source,
    )
