"""The two named data objects of the data stage.

``RawLog``: what a reader returns, one row per interaction, raw ids as strings, file order kept.
``Interactions``: the preprocessed log as flat arrays in CSR layout: user ``u``'s items are
``items[offsets[u]:offsets[u + 1]]``, oldest first. Item ids are 1..n_items (0 = padding);
``item_tokens[i]`` is the raw id of item ``i`` (``item_tokens[0] = "[PAD]"``). Arrays are
read-only by contract (they are flagged non-writeable).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

PAD_TOKEN = "[PAD]"


def _frozen(array: np.ndarray | None) -> np.ndarray | None:
    if array is not None:
        array.setflags(write=False)
    return array


@dataclass(frozen=True)
class RawLog:
    """Interactions as read from a file, before any preprocessing.

    Attributes:
        users: (N,) raw user ids (str).
        items: (N,) raw item ids (str).
        timestamps: (N,) float64 seconds, or None when the file has no time (the file order is
            then the time order within a user).
        ratings: (N,) float64, or None.
        behaviours: (N,) raw behaviour tokens (str), or None.
        test_rows: (N,) bool, True on rows of the dataset's shipped test file (their users
            are test-only: RetailRocket's ``retail_beh.test.inter``), or None.
        source: where the rows came from (a path or a generator name).
    """

    users: np.ndarray
    items: np.ndarray
    timestamps: np.ndarray | None = None
    ratings: np.ndarray | None = None
    behaviours: np.ndarray | None = None
    test_rows: np.ndarray | None = None
    source: str = ""

    def __len__(self) -> int:
        return len(self.users)


@dataclass(frozen=True)
class Interactions:
    """A preprocessed log: per-user time-ordered sequences as flat arrays (CSR).

    Attributes:
        offsets: (n_users + 1,) int64; user u's interactions are rows offsets[u]:offsets[u+1].
        items: (N,) int64 item ids in 1..n_items, each user's in time order.
        user_tokens: (n_users,) raw user ids.
        item_tokens: (n_items + 1,) raw item ids, index 0 is the padding token.
        timestamps: (N,) float64, or None.
        behaviours: (N,) int64 behaviour ids 0..n_behaviours-1, or None.
        behaviour_tokens: raw behaviour names by id, or None.
        is_noise: (N,) bool ground-truth noise labels (injected or planted), or None.
        test_users: (n_users,) bool, True for the users of a shipped test file (the
            ``target`` protocol tests them and never trains on them), or None.
        name: dataset name.
    """

    offsets: np.ndarray
    items: np.ndarray
    user_tokens: np.ndarray
    item_tokens: np.ndarray
    timestamps: np.ndarray | None = None
    behaviours: np.ndarray | None = None
    behaviour_tokens: tuple[str, ...] | None = None
    is_noise: np.ndarray | None = None
    test_users: np.ndarray | None = None
    name: str = ""

    def __post_init__(self) -> None:
        for array in (self.offsets, self.items, self.timestamps, self.behaviours, self.is_noise,
                      self.test_users):
            _frozen(array)

    @property
    def n_users(self) -> int:
        return len(self.offsets) - 1

    @property
    def n_items(self) -> int:
        """Number of real items (ids 1..n_items); score tensors have n_items + 1 columns."""
        return len(self.item_tokens) - 1

    @property
    def n_interactions(self) -> int:
        return len(self.items)

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    @property
    def row_users(self) -> np.ndarray:
        """(N,) the user index of every row."""
        return np.repeat(np.arange(self.n_users), self.lengths)

    def sequence(self, user: int) -> np.ndarray:
        return self.items[self.offsets[user] : self.offsets[user + 1]]

    def last_rows(self, count: int) -> np.ndarray:
        """(N,) True on each user's last ``count`` rows (leave-one-out's valid and test targets
        for ``count=2``)."""
        from_end = np.repeat(self.offsets[1:], self.lengths) - np.arange(self.n_interactions)
        return from_end <= count

    def subset(self, keep: np.ndarray, name: str | None = None) -> Interactions:
        """The log without the rows where ``keep`` (N,) is False: every user and the item
        vocabulary stay (ids unchanged), each user's kept rows in their order."""
        keep = np.asarray(keep, dtype=bool)
        counts = np.bincount(self.row_users[keep], minlength=self.n_users)
        pick = (lambda a: None if a is None else a[keep])  # noqa: E731
        return Interactions(
            offsets=np.concatenate([[0], np.cumsum(counts)]).astype(np.int64),
            items=self.items[keep], user_tokens=self.user_tokens, item_tokens=self.item_tokens,
            timestamps=pick(self.timestamps), behaviours=pick(self.behaviours),
            behaviour_tokens=self.behaviour_tokens, is_noise=pick(self.is_noise),
            test_users=self.test_users, name=self.name if name is None else name)

    def statistics(self) -> dict[str, float | int | str]:
        lengths = self.lengths
        counts = np.bincount(self.items, minlength=self.n_items + 1)[1:]
        return {
            "name": self.name,
            "users": self.n_users,
            "items": self.n_items,
            "interactions": self.n_interactions,
            "mean_length": round(float(lengths.mean()), 2) if len(lengths) else 0.0,
            "min_length": int(lengths.min()) if len(lengths) else 0,
            "median_length": float(np.median(lengths)) if len(lengths) else 0.0,
            "max_length": int(lengths.max()) if len(lengths) else 0,
            "density": round(self.n_interactions / max(1, self.n_users * self.n_items), 6),
            "min_item_count": int(counts.min()) if len(counts) else 0,
            **self.behaviour_statistics(),
        }

    def behaviour_statistics(self) -> dict[str, dict[str, dict[str, int]] | int]:
        """Per behaviour (raw token): interactions, users and items with at least one; plus
        the number of shipped test users. Empty for a log without behaviours."""
        out: dict[str, dict[str, dict[str, int]] | int] = {}
        if self.behaviours is not None and self.behaviour_tokens is not None:
            n_kinds = len(self.behaviour_tokens)
            per_user = np.zeros((self.n_users, n_kinds), dtype=bool)
            per_user[self.row_users, self.behaviours] = True
            per_item = np.zeros((self.n_items + 1, n_kinds), dtype=bool)
            per_item[self.items, self.behaviours] = True
            counts = np.bincount(self.behaviours, minlength=n_kinds)
            out["behaviours"] = {
                token: {"interactions": int(counts[b]), "users": int(per_user[:, b].sum()),
                        "items": int(per_item[:, b].sum())}
                for b, token in enumerate(self.behaviour_tokens)}
        if self.test_users is not None:
            out["shipped_test_users"] = int(self.test_users.sum())
        return out
