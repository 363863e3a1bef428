"""The ``target`` protocol: leave-one-out on the target behaviour, checked by hand and against a
brute-force re-implementation; the shipped RetailRocket split; per-behaviour statistics."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from denoiserec.data.batches import Batcher
from denoiserec.data.log import PAD_TOKEN, Interactions, RawLog
from denoiserec.data.preprocess import build_interactions
from denoiserec.errors import ConfigError, ProtocolError
from denoiserec.protocols import ProtocolConfig, exclude_unrankable, split

TOKENS = ("buy", "cart", "pv")  # ids 0, 1, 2


def behaviour_log(sequences: list[list[tuple[int, str]]],
                  test_users: list[bool] | None = None) -> Interactions:
    """A log of (item, behaviour) lists per user."""
    lengths = [len(s) for s in sequences]
    items = [item for s in sequences for item, _ in s]
    return Interactions(
        offsets=np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64),
        items=np.asarray(items, dtype=np.int64),
        user_tokens=np.array([f"u{u}" for u in range(len(sequences))], dtype=object),
        item_tokens=np.array([PAD_TOKEN, *(f"i{i}" for i in range(1, max(items) + 1))],
                             dtype=object),
        behaviours=np.asarray([TOKENS.index(b) for s in sequences for _, b in s]),
        behaviour_tokens=TOKENS,
        test_users=None if test_users is None else np.asarray(test_users),
        name="handmade")


HAND = [
    [(1, "pv"), (2, "buy"), (3, "pv"), (4, "buy"), (5, "cart"), (6, "buy"), (7, "pv")],
    [(2, "buy"), (3, "pv"), (4, "buy")],  # first row is never a target: one instance
    [(5, "pv"), (6, "buy"), (7, "buy")],  # two instances: test only
    [(1, "pv"), (2, "cart")],  # no target behaviour
]


def test_split_by_hand():
    parts = split(behaviour_log(HAND), ProtocolConfig(name="target"))
    # user 0: buys at rows 1, 3, 5 -> train 1, valid 3, test 5; the trailing pv is unused
    # user 1 (rows 7-9): buy at 9 only (7 is the first row) -> train 9
    # user 2 (rows 10-12): buys at 11, 12 -> train 11, test 12
    assert parts.train_targets.tolist() == [1, 9, 11]
    assert parts.valid.targets.tolist() == [3]
    assert parts.test.targets.tolist() == [5, 12]
    assert parts.train_end.tolist() == [3, 10, 12, 15]
    assert parts.statistics()["target_behaviour"] == "buy"


def test_every_behaviour_is_input_and_all_mode_trains_on_every_row():
    log = behaviour_log(HAND)
    parts = split(log, ProtocolConfig(name="target", train_targets="all"))
    # rows before train_end but not a first row; user 3 has no target: all its rows train
    assert parts.train_targets.tolist() == [1, 2, 8, 9, 11, 14]
    batch = Batcher(log, 10, torch.device("cpu")).prefix(
        torch.as_tensor(parts.test.users), torch.as_tensor(parts.test.targets))
    assert batch.items[0].tolist() == [1, 2, 3, 4, 5]  # pv, buy, pv, buy, cart before the buy
    assert batch.behaviours[0].tolist() == [2, 0, 2, 0, 1]
    assert batch.target_behaviours.tolist() == [0, 0]


def brute_force(sequences, targets=("buy",), shipped=None):
    train, valid, test, start = [], [], [], 0
    for u, sequence in enumerate(sequences):
        rows = [start + i for i, (_, b) in enumerate(sequence) if b in targets and i > 0]
        if shipped is not None and shipped[u]:
            test += rows[-1:]
        elif shipped is not None:
            held = 1 if len(rows) >= 2 else 0
            valid += rows[len(rows) - 1:] if held else []
            train += rows[: len(rows) - held]
        else:
            held = min(2, max(len(rows) - 1, 0))
            train += rows[: len(rows) - held]
            valid += [rows[-2]] if held == 2 else []
            test += [rows[-1]] if held >= 1 else []
        start += len(sequence)
    return train, valid, test


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("with_shipped", [False, True])
def test_split_matches_brute_force(seed: int, with_shipped: bool):
    rng = np.random.default_rng(seed)
    sequences = [[(int(rng.integers(1, 20)), str(rng.choice(TOKENS, p=[0.3, 0.2, 0.5])))
                  for _ in range(int(rng.integers(1, 12)))] for _ in range(40)]
    sequences[0] = [(1, "pv"), (2, "buy"), (3, "buy"), (4, "buy")]  # something to test
    shipped = list(rng.random(40) < 0.3) if with_shipped else None
    config = ProtocolConfig(name="target", target_behaviour="buy, cart")
    parts = split(behaviour_log(sequences, shipped), config)
    train, valid, test = brute_force(sequences, ("buy", "cart"), shipped)
    assert parts.train_targets.tolist() == train
    assert parts.valid.targets.tolist() == valid
    assert parts.test.targets.tolist() == test
    users = parts.log.row_users
    # no held-out target, and nothing of a test-only user, is trained on
    assert (parts.train_targets < parts.train_end[users[parts.train_targets]]).all()
    for held in (parts.valid.targets, parts.test.targets):
        assert (held >= parts.train_end[users[held]]).all()


def test_shipped_split_off_ignores_the_test_flag():
    log = behaviour_log(HAND, test_users=[False, False, True, False])
    on = split(log, ProtocolConfig(name="target"))
    assert on.test.targets.tolist() == [12] and on.valid.targets.tolist() == [5]
    assert on.train_targets.tolist() == [1, 3, 9]
    off = split(log, ProtocolConfig(name="target", shipped_split=False))
    assert off.test.targets.tolist() == [5, 12]


def test_history_masking_is_a_setting():
    log = behaviour_log(HAND)
    items, starts = torch.tensor(log.items), torch.tensor(log.offsets[:-1])
    targets = torch.tensor([5])  # user 0's test: history items 1..5, target item 6
    for mask, hidden in ((False, []), (True, [1, 2, 3, 4, 5])):
        scores = exclude_unrankable(torch.zeros(1, 8), items, starts[[0]], targets,
                                    torch.tensor([6]),
                                    ProtocolConfig(name="target", mask_history=mask), None)
        assert torch.isinf(scores[0]).nonzero().flatten().tolist() == [0, *hidden]


def test_one_line_errors():
    with pytest.raises(ProtocolError, match="no behaviour fav"):
        split(behaviour_log(HAND), ProtocolConfig(name="target", target_behaviour="fav"))
    plain = behaviour_log(HAND)
    plain = Interactions(plain.offsets, plain.items, plain.user_tokens, plain.item_tokens)
    with pytest.raises(ProtocolError, match="needs behaviours"):
        split(plain, ProtocolConfig(name="target"))
    with pytest.raises(ConfigError, match="target_behaviour"):
        ProtocolConfig(name="target", target_behaviour="buy,")
    with pytest.raises(ConfigError, match="train_targets"):
        ProtocolConfig(name="target", train_targets="some")


def test_behaviour_statistics_and_test_users_from_raw_rows():
    raw = RawLog(users=np.array(["a", "a", "b", "b", "c"], dtype=object),
                 items=np.array(["x", "y", "x", "z", "y"], dtype=object),
                 behaviours=np.array(["pv", "buy", "pv", "pv", "buy"], dtype=object),
                 test_rows=np.array([False, False, False, False, True]))
    log = build_interactions(raw)
    assert log.test_users.tolist() == [False, False, True]
    stats = log.statistics()
    assert stats["behaviours"] == {"buy": {"interactions": 2, "users": 2, "items": 1},
                                   "pv": {"interactions": 3, "users": 2, "items": 2}}
    assert stats["shipped_test_users"] == 1


def test_retailrocket_shipped_split(real_data):
    from denoiserec.data import load_dataset

    log = load_dataset("retailrocket", shipped_test=True)
    assert int(log.test_users.sum()) == 2000  # PROVENANCE.md: 2,000 test rows
    parts = split(log, ProtocolConfig(name="target", target_behaviour="0,3"))
    assert len(parts.test) == 2000
    assert set(parts.log.user_tokens[parts.test.users]) == set(log.user_tokens[log.test_users])
    assert not log.test_users[parts.train_users].any()
    assert not log.test_users[parts.valid.users].any()
