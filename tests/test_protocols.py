"""The leave-one-out split (RecBole's rule) and the exact RecBole sequences on ml-100k."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from denoiserec.data import load_dataset
from denoiserec.data.datasets import DataConfig
from denoiserec.protocols import ProtocolConfig, split
from tests.conftest import make_log

RECBOLE_ML100K_DIGEST = "fc3282891f2dc1985024ea8313f321ba10b4730bb918c4a4cb5d96ba0c5101ea"


def naive_leave_one_out(sequences):
    """RecBole's leave_one_out(leave_one_num=2) over each user's n-1 prefix instances."""
    train, valid, test, start = [], [], [], 0
    for sequence in sequences:
        instances = list(range(start + 1, start + len(sequence)))  # target rows
        held = min(2, max(len(instances) - 1, 0))
        train += instances[: len(instances) - held]
        if held == 2:
            valid.append(instances[-2])
        if held >= 1:
            test.append(instances[-1])
        start += len(sequence)
    return train, valid, test


def test_split_matches_naive_rule_including_short_users():
    sequences = [[1], [2, 3], [4, 5, 6], [1, 2, 3, 4], [5, 6, 1, 2, 3, 4, 5]]
    parts = split(make_log(sequences), ProtocolConfig())
    train, valid, test = naive_leave_one_out(sequences)
    assert parts.train_targets.tolist() == train
    assert parts.valid.targets.tolist() == valid
    assert parts.test.targets.tolist() == test


def test_split_partitions_targets_and_never_leaks(random_log):
    parts = split(random_log, ProtocolConfig())
    rows = np.concatenate([parts.train_targets, parts.valid.targets, parts.test.targets])
    assert len(rows) == len(set(rows.tolist()))  # disjoint
    first_rows = set(random_log.offsets[:-1].tolist())
    assert not first_rows & set(rows.tolist())  # a user's first item is never a target
    users = random_log.row_users
    for targets in (parts.valid.targets, parts.test.targets):
        # every training target of the user comes before its valid/test targets
        for row in targets:
            same_user = parts.train_targets[users[parts.train_targets] == users[row]]
            assert (same_user < row).all()
    assert (parts.train_targets < parts.train_end[users[parts.train_targets]]).all()


def sequence_digest(log) -> str:
    lines = []
    for user in sorted(range(log.n_users), key=lambda u: int(log.user_tokens[u])):
        items = " ".join(log.item_tokens[log.sequence(user)])
        lines.append(f"{log.user_tokens[user]}\t{items}")
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()


def test_ml100k_recbole_sequences_digest(real_data):
    log = load_dataset("ml-100k")
    assert (log.n_users, log.n_items, log.n_interactions) == (943, 1682, 100_000)
    assert sequence_digest(log) == RECBOLE_ML100K_DIGEST
    parts = split(log, ProtocolConfig(name="recbole"))
    assert len(parts.train_targets) == 97_171
    assert len(parts.valid) == len(parts.test) == 943


def test_ml100k_raw_time_order_differs_from_recbole(real_data):
    # RecBole's float32 normalised timestamps merge near ties: raw order gives other sequences
    exact = load_dataset(DataConfig(dataset="ml-100k", time_order="exact"))
    assert sequence_digest(exact) != RECBOLE_ML100K_DIGEST


@pytest.mark.parametrize("protocol", ["recbole", "fmlp", "sampled"])
def test_protocol_name_travels_with_split(random_log, protocol):
    parts = split(random_log, ProtocolConfig(name=protocol, n_negatives=5))
    assert parts.statistics()["protocol"] == protocol


def test_sampled_negatives_refuse_a_user_with_too_few_unseen_items():
    """7 of 10 items seen leaves 3 to draw: asking for 5 must fail at once, not loop forever."""
    import signal

    from denoiserec.errors import ProtocolError
    from denoiserec.protocols import protocol_negatives

    log = make_log([[1, 2, 3, 4, 5, 6, 7], [8, 9, 10]], n_items=10)
    signal.signal(signal.SIGALRM, lambda *_: (_ for _ in ()).throw(TimeoutError("hangs")))
    signal.alarm(10)
    try:
        with pytest.raises(ProtocolError, match="fewer than n_negatives=5"):
            protocol_negatives(log, np.array([0, 1]), 5, "uniform", seed=0)
        assert protocol_negatives(log, np.array([0, 1]), 3, "uniform", seed=0).shape == (2, 3)
    finally:
        signal.alarm(0)
