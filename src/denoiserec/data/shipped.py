"""Datasets that ship their own test file: the training file's log plus the test file's users.

RetailRocket (MBHT's ``retail_beh``) ships ``retail_beh.train.inter`` and
``retail_beh.test.inter``: the test file holds 2,000 other shoppers whose last purchase is the
test target (its PROVENANCE.md). :func:`read_with_shipped_test` reads both with the same reader
into one raw log over one item vocabulary; the test file's users get the prefix ``test:`` (its
session ids restart at 1 and name other shoppers) and its rows are flagged in
``RawLog.test_rows``, which preprocessing turns into ``Interactions.test_users``. The ``target``
protocol (``denoiserec.protocols``) then tests those users and never trains on them.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from denoiserec.data.log import RawLog
from denoiserec.errors import DataError

TEST_USER_PREFIX = "test:"


def _concatenate(first: np.ndarray | None, second: np.ndarray | None, what: str,
                 path: Path) -> np.ndarray | None:
    if (first is None) != (second is None):
        raise DataError(f"{path}: the test file {'lacks' if second is None else 'adds'} {what} "
                        "the training file has" + ("" if second is None else " not"))
    return None if first is None else np.concatenate([first, second])


def read_with_shipped_test(train_path: Path, test_path: Path,
                           reader: Callable[[Path], RawLog]) -> RawLog:
    """The training file's rows, then the test file's (users prefixed ``test:``), one log."""
    if not test_path.is_file():
        raise DataError(f"{test_path}: the dataset's shipped test file is missing")
    train, test = reader(train_path), reader(test_path)
    prefixed = np.asarray([TEST_USER_PREFIX + str(user) for user in test.users], dtype=object)
    return RawLog(
        users=np.concatenate([train.users, prefixed]),
        items=np.concatenate([train.items, test.items]),
        timestamps=_concatenate(train.timestamps, test.timestamps, "timestamps", test_path),
        ratings=_concatenate(train.ratings, test.ratings, "ratings", test_path),
        behaviours=_concatenate(train.behaviours, test.behaviours, "behaviours", test_path),
        test_rows=np.r_[np.zeros(len(train), dtype=bool), np.ones(len(test), dtype=bool)],
        source=f"{train_path} + {test_path.name}",
    )


def shipped_test_path(path: Path) -> Path | None:
    """The test file shipped beside ``path`` (``*.train.*`` -> ``*.test.*``), if it exists."""
    if ".train." not in path.name:
        return None
    candidate = path.with_name(path.name.replace(".train.", ".test.", 1))
    return candidate if candidate.is_file() else None
