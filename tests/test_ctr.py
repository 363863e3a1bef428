"""The CTR sample builder (ATJT spec §1, ``data/ctr.py``) against naive implementations.

Layout: one target per user (its last interaction), its history the rows before it as the
batcher cuts them, parts disjoint by user, seeded. Negatives: never an item of the user,
distinct, seeded, and distributed as popularity^0.75 *of the right ids* (the published
sampler's id misalignment, planted, fails the frequency test; the labelled option reproduces
it).
"""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
import torch

from denoiserec.data.batches import Batcher
from denoiserec.data.ctr import (
    CTRConfig,
    build_samples,
    negative_distribution,
    sample_negatives,
)
from denoiserec.errors import ConfigError, ProtocolError
from denoiserec.protocols import ProtocolConfig, split
from tests.conftest import make_log

MAX_LEN = 4


def _popular_log(n_users: int = 600, n_items: int = 12, seed: int = 3):
    """Users of 2-5 items drawn from a popularity that is *not* monotone in the id."""
    rng = np.random.default_rng(seed)
    weights = rng.permutation(np.geomspace(1, 40, n_items))
    weights /= weights.sum()
    sequences = [list(rng.choice(np.arange(1, n_items + 1), size=int(rng.integers(2, 6)),
                                 replace=False, p=weights)) for _ in range(n_users)]
    return make_log(sequences, n_items=n_items)


def _naive_distribution(log, exponent: float = 0.75, misaligned: bool = False) -> np.ndarray:
    """value_counts() ** 0.75 by hand: aligned to the ids, or in count order over ids 1.."""
    counts = Counter(int(i) for i in log.items)
    p = np.zeros(log.n_items + 1)
    if misaligned:  # the published code: the k-th most popular item's mass -> id k
        ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
        for position, (_, count) in enumerate(ranked, start=1):
            p[position] = count ** exponent
    else:
        for item, count in counts.items():
            p[item] = count ** exponent
    return p / p.sum()


# -- layout (spec §1.1, §1.4, §8.1) --------------------------------------------------------------
def test_one_target_per_user_with_its_history_as_a_naive_builder():
    log = _popular_log(n_users=50)
    samples = build_samples(log, CTRConfig(negatives=5), seed=1)
    parts = (samples.train, samples.valid, samples.test)
    users = np.concatenate([p.users for p in parts])
    assert sorted(users.tolist()) == list(range(log.n_users))  # each user exactly once
    assert (len(samples.test), len(samples.valid)) == (10, 5)  # 0.2 and 0.1 of 50
    batcher = Batcher(log, MAX_LEN, torch.device("cpu"))
    for part in parts:
        batch = batcher.prefix(torch.as_tensor(part.users), torch.as_tensor(part.rows))
        for j, user in enumerate(part.users.tolist()):
            sequence = log.sequence(user).tolist()
            history = sequence[:-1][-MAX_LEN:]  # naive: every item before the last one
            assert int(batch.targets[j]) == sequence[-1]
            assert int(batch.lengths[j]) == len(history)
            row = batch.items[j].tolist()
            assert row == history + [0] * (len(row) - len(history))  # left-aligned, 0 after
    assert (samples.train_end[samples.train.users] == log.offsets[1:][samples.train.users]).all()
    held = np.concatenate([samples.valid.users, samples.test.users])
    assert (samples.train_end[held] == log.offsets[:-1][held]).all()  # never trained on


def test_last_split_keeps_every_user_in_every_part():
    log = make_log([[1, 2, 3, 4, 5], [6, 7, 8, 9], [1, 2, 3]], n_items=12)
    samples = build_samples(log, CTRConfig(split="last", negatives=3), seed=0)
    for part in (samples.train, samples.valid, samples.test):
        assert part.users.tolist() == [0, 1]  # the 3-item user has no trainable target
    assert log.items[samples.train.rows].tolist() == [3, 7]
    assert log.items[samples.valid.rows].tolist() == [4, 8]
    assert log.items[samples.test.rows].tolist() == [5, 9]
    assert samples.train_end.tolist() == [3, 7, 9]  # rows before the valid target


def test_samples_are_seeded():
    log = _popular_log(n_users=80)
    config = CTRConfig(negatives=5)
    a, b = build_samples(log, config, 4), build_samples(log, config, 4)
    c = build_samples(log, config, 5)
    for name in ("train", "valid", "test"):
        assert np.array_equal(getattr(a, name).users, getattr(b, name).users)
        assert np.array_equal(getattr(a, name).negatives, getattr(b, name).negatives)
    assert not np.array_equal(a.test.users, c.test.users)


def test_the_protocol_split_carries_the_samples():
    log = _popular_log(n_users=40)
    config = CTRConfig(negatives=5)
    parts = split(log, ProtocolConfig(name="ctr", seed=2, ctr=config))
    samples = build_samples(log, config, 2)
    assert np.array_equal(parts.train_targets, samples.train.rows)
    assert np.array_equal(parts.train_negatives, samples.train.negatives)
    assert parts.test.negatives.shape == (len(samples.test), 5)


# -- negatives (spec §1.3) ------------------------------------------------------------------------
def test_negatives_avoid_the_users_items_and_repeat_nothing():
    log = make_log([list(range(1, 40)), [2, 5], [7, 8, 9, 10], list(range(60, 101))],
                   n_items=100)
    samples = build_samples(log, CTRConfig(split="last", negatives=30, train_negatives=3),
                            seed=0)
    for part in (samples.train, samples.valid, samples.test):
        for user, negatives in zip(part.users, part.negatives, strict=True):
            own = set(log.sequence(user).tolist())
            assert not own & set(negatives.tolist())
            assert len(set(negatives.tolist())) == len(negatives)
            assert ((negatives >= 1) & (negatives <= 100)).all()


def test_a_user_with_exactly_k_items_left_gets_exactly_those():
    log = make_log([[1, 2, 3, 4, 5, 6], [7, 8, 9]], n_items=10)  # 10: never seen, never drawn
    rng = np.random.default_rng(0)
    p = negative_distribution(log)
    negatives = sample_negatives(log, np.array([0, 0]), 3, p, rng)
    assert [sorted(row) for row in negatives.tolist()] == [[7, 8, 9], [7, 8, 9]]
    with pytest.raises(ProtocolError, match="fewer than 4 items left"):
        sample_negatives(log, np.array([0]), 4, p, rng)


@pytest.mark.parametrize("misaligned", [False, True])
def test_distribution_is_popularity_075_of_the_ids(misaligned: bool):
    log = _popular_log()
    p = negative_distribution(log, 0.75, misaligned)
    assert np.allclose(p, _naive_distribution(log, 0.75, misaligned), atol=1e-15)


@pytest.mark.parametrize("sampler", ["pop075", "pop075_idmisaligned"])
def test_sampled_frequencies_match_the_naive_conditional_distribution(sampler: str):
    """One negative per row: item j comes with p_j / (1 - p(own items)) unless it is the
    user's own; the empirical frequencies over 18,000 rows match within 5 standard errors."""
    log = _popular_log()
    p = _naive_distribution(log, 0.75, sampler == "pop075_idmisaligned")
    users = np.repeat(np.arange(log.n_users), 30)
    rng = np.random.default_rng(11)
    drawn = sample_negatives(log, users, 1, negative_distribution(
        log, 0.75, sampler == "pop075_idmisaligned"), rng)[:, 0]
    expected = np.zeros(log.n_items + 1)
    for user in range(log.n_users):  # naive: the user's conditional distribution
        q = p.copy()
        q[log.sequence(user)] = 0.0
        expected += q / q.sum()
    expected /= log.n_users
    observed = np.bincount(drawn, minlength=log.n_items + 1) / len(drawn)
    tolerance = 5 * np.sqrt(expected * (1 - expected) / len(drawn)) + 1e-9
    assert (np.abs(observed - expected) <= tolerance).all(), (observed - expected).round(4)


def test_the_two_samplers_differ_on_a_log_whose_popularity_is_not_id_ordered():
    log = _popular_log()
    assert not np.allclose(negative_distribution(log), negative_distribution(log,
                                                                             misaligned=True))


# -- settings --------------------------------------------------------------------------------------
@pytest.mark.parametrize("override, message", [
    ({"sampler": "pop"}, "protocol.ctr.sampler must be one of"),
    ({"split": "time"}, "protocol.ctr.split must be one of"),
    ({"test_share": 0.6, "valid_share": 0.5}, "must be below 1"),
    ({"negatives": 0}, "protocol.ctr.negatives must be in"),
])
def test_bad_settings_are_one_line_errors(override, message):
    with pytest.raises(ConfigError, match=message):
        CTRConfig(**override)


def test_ctr_settings_need_the_ctr_protocol():
    with pytest.raises(ConfigError, match="need protocol=ctr"):
        ProtocolConfig(name="recbole", ctr=CTRConfig(negatives=9))


def test_protocol_checks_that_were_dead_code_run():
    """ProtocolConfig's negatives / ties / n_negatives checks sat after a ``return`` (never
    ran); they run in ``__post_init__`` now."""
    with pytest.raises(ConfigError, match="protocol.negatives must be one of"):
        ProtocolConfig(name="sampled", negatives="popular")
    with pytest.raises(ConfigError, match="protocol.ties must be one of"):
        ProtocolConfig(ties="random")
