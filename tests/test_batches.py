"""Batches: ``Batcher.prefix`` / ``Batcher.window`` / ``window_ends`` / ``strided_windows``
against naive loops."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from denoiserec.data.batches import Batcher, counted_mask, strided_windows, window_ends
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


# -- strided windows with a random offset ------------------------------------------------------
STRIDED = [(1, 1), (3, 1), (3, 2), (3, 3), (4, 3), (5, 2), (8, 8), (8, 5), (8, 1)]  # (max_len, s)


def _random_log(seed: int, n_users: int = 12) -> tuple[Interactions, np.ndarray]:
    """A log of random lengths 1..25 (item = row + 1) and a train end holding out 0..2 rows."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(1, 26, size=n_users)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    n = int(offsets[-1])
    log = Interactions(
        offsets=offsets, items=np.arange(1, n + 1, dtype=np.int64),
        user_tokens=np.array([f"u{u}" for u in range(n_users)], dtype=object),
        item_tokens=np.array([PAD_TOKEN, *(f"i{i}" for i in range(n))], dtype=object))
    train_end = np.maximum(offsets[1:] - rng.integers(0, 3, size=n_users), offsets[:-1])
    return log, train_end


def _naive_strided(starts: np.ndarray, train_end: np.ndarray, stride: int,
                   offsets: np.ndarray) -> tuple[list[int], list[int]]:
    users, ends = [], []
    for u, (start, last, offset) in enumerate(zip(starts.tolist(), train_end.tolist(),
                                                  offsets.tolist(), strict=True)):
        if offset > 0 and last - 1 > start:
            users.append(u)
            ends.append(last)
        end = last - offset
        while end - 1 > start:
            users.append(u)
            ends.append(end)
            end -= stride
    return users, ends


def _epoch_rng(epoch: int) -> np.random.Generator:
    return np.random.default_rng([2020, epoch])


@pytest.mark.parametrize(("max_len", "stride"), STRIDED)
@pytest.mark.parametrize("epoch", [None, 0, 1, 2])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_strided_windows_cover_every_target_and_count_it_once(max_len: int, stride: int,
                                                              epoch: int | None,
                                                              seed: int) -> None:
    log, train_end = _random_log(seed)
    starts = log.offsets[:-1]
    rng = None if epoch is None else _epoch_rng(epoch)
    users, ends, counted = strided_windows(starts, train_end, max_len, stride, rng)

    # the same as a naive loop with the offsets the generator draws
    offsets = (np.zeros(len(starts), dtype=np.int64) if epoch is None
               else _epoch_rng(epoch).integers(0, stride, size=len(starts), dtype=np.int64))
    assert (users.tolist(), ends.tolist()) == _naive_strided(starts, train_end, stride, offsets)

    batch = Batcher(log, max_len, torch.device("cpu")).window(torch.as_tensor(users),
                                                             torch.as_tensor(ends))
    real = batch.padding_mask
    target_rows = batch.rows + 1
    assert (batch.lengths >= 1).all()
    assert (target_rows[real] < torch.as_tensor(train_end)[batch.users][:, None]
            .expand_as(real)[real]).all()  # no target at or beyond train_end
    assert (ends <= train_end[users]).all()
    expected = [r for u in range(log.n_users) for r in range(int(starts[u]) + 1,
                                                                 int(train_end[u]))]
    assert sorted(set(target_rows[real].tolist())) == expected  # every target at least once

    # counted: each target exactly once, in the window where its context is longest
    mask = counted_mask(batch.lengths, torch.as_tensor(counted), batch.items.shape[1])
    assert not (mask & ~real).any()
    assert sorted(target_rows[mask].tolist()) == expected
    context = torch.arange(batch.items.shape[1])[None, :].expand_as(real) + 1  # inputs seen
    longest: dict[int, int] = {}
    for row, length in zip(target_rows[real].tolist(), context[real].tolist(), strict=True):
        longest[row] = max(longest.get(row, 0), length)
    counted_context = dict(zip(target_rows[mask].tolist(), context[mask].tolist(), strict=True))
    assert counted_context == longest


@pytest.mark.parametrize("max_len", MAX_LENS)
@pytest.mark.parametrize("held_out", [0, 1, 2])
def test_strided_windows_at_full_stride_are_todays_windows(max_len: int, held_out: int) -> None:
    for log, train_end in [_random_log(7), (_log(False), None)]:
        starts = log.offsets[:-1]
        if train_end is None:
            train_end = np.maximum(log.offsets[1:] - held_out, starts)
        users, ends, counted = strided_windows(starts, train_end, max_len)
        assert (users.tolist(), ends.tolist()) == _naive_window_ends(starts, train_end, max_len)
        assert users.tolist() == window_ends(starts, train_end, max_len)[0].tolist()
        # non-overlapping: every window counts all its targets
        n_targets = np.minimum(ends - 1 - starts[users], max_len)
        assert np.array_equal(counted, n_targets)


def test_strided_window_offsets_change_between_epochs() -> None:
    log, train_end = _random_log(3, n_users=40)
    starts = log.offsets[:-1]
    first = strided_windows(starts, train_end, 8, 4, _epoch_rng(0))
    again = strided_windows(starts, train_end, 8, 4, _epoch_rng(0))
    second = strided_windows(starts, train_end, 8, 4, _epoch_rng(1))
    assert all(np.array_equal(a, b) for a, b in zip(first, again, strict=True))  # reproducible
    assert not np.array_equal(first.ends, second.ends)  # another epoch, other cut points
    assert set(first.ends.tolist()) != set(second.ends.tolist())


def test_strided_window_offsets_vary_the_counted_context() -> None:
    """Full stride + offset: over epochs a target is counted at every context length."""
    max_len, n = 5, 23
    log = Interactions(offsets=np.array([0, n]), items=np.arange(1, n + 1, dtype=np.int64),
                       user_tokens=np.array(["u0"], dtype=object),
                       item_tokens=np.array([PAD_TOKEN, *(f"i{i}" for i in range(n))],
                                            dtype=object))
    starts, train_end = log.offsets[:-1], log.offsets[1:]
    row = n - 1 - 2 * max_len  # far from both ends: no window is cut short around it
    batcher = Batcher(log, max_len, torch.device("cpu"))
    seen = set()
    for epoch in range(60):
        users, ends, counted = strided_windows(starts, train_end, max_len, max_len,
                                               _epoch_rng(epoch))
        batch = batcher.window(torch.as_tensor(users), torch.as_tensor(ends))
        mask = counted_mask(batch.lengths, torch.as_tensor(counted), batch.items.shape[1])
        (position,) = torch.nonzero((batch.rows + 1 == row) & mask)[:, 1].tolist()
        seen.add(position + 1)  # context length at which the row is counted this epoch
    assert seen == set(range(1, max_len + 1))


def test_strided_windows_reject_a_stride_beyond_max_len() -> None:
    with pytest.raises(ValueError, match="stride"):
        strided_windows(np.array([0]), np.array([5]), 3, 4)
    with pytest.raises(ValueError, match="stride"):
        strided_windows(np.array([0]), np.array([5]), 3, 0)


def test_strided_windows_without_users_or_targets() -> None:
    empty = strided_windows(np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64), 4, 2,
                            _epoch_rng(0))
    assert all(len(a) == 0 for a in empty)
    none = strided_windows(np.array([0, 3]), np.array([1, 3]), 4, 2, _epoch_rng(0))
    assert all(len(a) == 0 for a in none)
