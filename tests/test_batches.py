"""Batches: ``Batcher.prefix`` / ``Batcher.window`` / ``window_ends`` against naive loops."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from denoiserec.data.batches import Batcher, window_ends
from denoiserec.data.log import PAD_TOKEN, Interactions

LENGTHS = (2, 5, 9, 1)  # the user of length 1 has no training target at all
MAX_LENS = (1, 3, 4, 8, 9, 12)


def _log(with_behaviours: bool) -> Interactions:
    """Users with sequences of the given lengths; rows hold distinct items 1..N (item = row+1)."""
    offsets = np.concatenate([[0], np.cumsum(LENGTHS)]).astype(np.int64)
    n = int(offsets[-1])
    items = np.arange(1, n + 1, dtype=np.int64)[::-1].copy()  # distinct, not sorted by row
    behaviours = (np.arange(n, dtype=np.int64) * 7 + 1) % 3 if with_behaviours else None
    return Interactions(
        offsets=offsets,
        items=items,
        user_tokens=np.array([f"u{u}" for u in range(len(LENGTHS))], dtype=object),
        item_tokens=np.array([PAD_TOKEN, *(f"i{i}" for i in range(n))], dtype=object),
        behaviours=behaviours,
        behaviour_tokens=("click", "cart", "buy") if with_behaviours else None,
    )


def _padded(values: list[int], max_len: int, fill: int) -> list[int]:
    return values + [fill] * (max_len - len(values))


def _naive_prefix(log: Interactions, user: int, target: int, max_len: int) -> dict:
    start = int(log.offsets[user])
    rows = list(range(max(start, target - max_len), target))
    expected = {
        "items": _padded([int(log.items[r]) for r in rows], max_len, 0),
        "lengths": len(rows),
        "targets": int(log.items[target]),
        "users": user,
        "rows": _padded(rows, max_len, -1),
    }
    if log.behaviours is not None:
        expected["behaviours"] = _padded([int(log.behaviours[r]) for r in rows], max_len, 0)
        expected["target_behaviours"] = int(log.behaviours[target])
    return expected


def _naive_window(log: Interactions, user: int, end: int, max_len: int) -> dict:
    """Inputs are the at most ``max_len`` rows before ``end - 1``; each predicts the next row."""
    start = int(log.offsets[user])
    rows = list(range(max(start, end - 1 - max_len), end - 1))
    expected = {
        "items": _padded([int(log.items[r]) for r in rows], max_len, 0),
        "lengths": len(rows),
        "targets": _padded([int(log.items[r + 1]) for r in rows], max_len, 0),
        "users": user,
        "rows": _padded(rows, max_len, -1),
    }
    if log.behaviours is not None:
        expected["behaviours"] = _padded([int(log.behaviours[r]) for r in rows], max_len, 0)
        expected["target_behaviours"] = _padded([int(log.behaviours[r + 1]) for r in rows],
                                                max_len, 0)
    return expected


def _trimmed(expected_rows: list[dict]) -> list[dict]:
    """Batches are cut to their longest row (right padding): trim the naive rows alike."""
    width = max(e["lengths"] for e in expected_rows)
    return [{k: v[:width] if isinstance(v, list) else v for k, v in e.items()}
            for e in expected_rows]


def _check_batch(batch, expected_rows: list[dict], with_behaviours: bool) -> None:
    assert len(batch) == len(expected_rows)
    expected_rows = _trimmed(expected_rows)
    assert batch.items.shape[1] == len(expected_rows[0]["items"])
    for name in ("items", "lengths", "targets", "users", "rows"):
        actual = getattr(batch, name).tolist()
        assert actual == [e[name] for e in expected_rows], name
    if with_behaviours:
        assert batch.behaviours.tolist() == [e["behaviours"] for e in expected_rows]
        assert batch.target_behaviours.tolist() == [e["target_behaviours"]
                                                    for e in expected_rows]
    else:
        assert batch.behaviours is None and batch.target_behaviours is None
    positions = torch.arange(batch.items.shape[1])[None, :]
    assert torch.equal(batch.padding_mask, positions < batch.lengths[:, None])


@pytest.mark.parametrize("with_behaviours", [False, True])
@pytest.mark.parametrize("max_len", MAX_LENS)
def test_prefix_matches_naive_construction(max_len: int, with_behaviours: bool) -> None:
    log = _log(with_behaviours)
    pairs = [(u, r) for u in range(log.n_users)
             for r in range(int(log.offsets[u]) + 1, int(log.offsets[u + 1]))]
    users = torch.tensor([u for u, _ in pairs])
    targets = torch.tensor([r for _, r in pairs])
    batch = Batcher(log, max_len, torch.device("cpu")).prefix(users, targets)
    assert batch.items.shape[1] <= max_len
    _check_batch(batch, [_naive_prefix(log, u, r, max_len) for u, r in pairs], with_behaviours)


@pytest.mark.parametrize("with_behaviours", [False, True])
@pytest.mark.parametrize("max_len", MAX_LENS)
def test_window_matches_naive_construction(max_len: int, with_behaviours: bool) -> None:
    log = _log(with_behaviours)
    # every end that leaves at least one target: end - 1 > start, end <= the user's last row + 1
    pairs = [(u, e) for u in range(log.n_users)
             for e in range(int(log.offsets[u]) + 2, int(log.offsets[u + 1]) + 1)]
    users = torch.tensor([u for u, _ in pairs])
    ends = torch.tensor([e for _, e in pairs])
    batch = Batcher(log, max_len, torch.device("cpu")).window(users, ends)
    assert batch.targets.shape == batch.items.shape and batch.items.shape[1] <= max_len
    _check_batch(batch, [_naive_window(log, u, e, max_len) for u, e in pairs], with_behaviours)


def test_batcher_leaves_the_log_untouched() -> None:
    log = _log(with_behaviours=True)
    items, behaviours = log.items.copy(), log.behaviours.copy()
    batcher = Batcher(log, 4, torch.device("cpu"))
    batch = batcher.window(torch.tensor([2]), torch.tensor([16]))
    batch.items.add_(1)
    batcher.items.add_(1)
    assert np.array_equal(log.items, items) and np.array_equal(log.behaviours, behaviours)


def _naive_window_ends(starts: np.ndarray, train_end: np.ndarray, max_len: int) -> tuple:
    users, ends = [], []
    for u, (start, last) in enumerate(zip(starts.tolist(), train_end.tolist(), strict=True)):
        end = last
        while end - 1 > start:  # the window still has a target row in start+1 .. end-1
            users.append(u)
            ends.append(end)
            end -= max_len
    return users, ends


@pytest.mark.parametrize("max_len", MAX_LENS)
@pytest.mark.parametrize("held_out", [0, 1, 2])
def test_window_ends_cover_every_training_target_once(max_len: int, held_out: int) -> None:
    log = _log(with_behaviours=False)
    starts = log.offsets[:-1]
    train_end = np.maximum(log.offsets[1:] - held_out, starts)  # last rows held out for eval
    users, ends = window_ends(starts, train_end, max_len)
    assert (users.tolist(), ends.tolist()) == _naive_window_ends(starts, train_end, max_len)

    batch = Batcher(log, max_len, torch.device("cpu")).window(torch.as_tensor(users),
                                                             torch.as_tensor(ends))
    covered = (batch.rows[batch.padding_mask] + 1).tolist()  # target row of every real position
    expected = [r for u in range(log.n_users)
                for r in range(int(starts[u]) + 1, int(train_end[u]))]
    assert sorted(covered) == expected  # each training target row exactly once
    assert (batch.lengths >= 1).all()
    assert torch.equal(batch.targets[batch.padding_mask],
                       torch.tensor(log.items)[batch.rows[batch.padding_mask] + 1])
