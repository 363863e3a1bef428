"""The analysis helpers of ``benchmarks/atjt.py`` (RECORD §10.5) against naive references."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from denoiserec.data.batches import Batcher
from denoiserec.noise.detection import roc_auc
from denoiserec.run import prepare
from denoiserec.runconfig import load_config


@pytest.fixture(scope="module")
def atjt_script():
    from benchmarks import atjt

    return atjt


def test_auc_same_length_counts_only_equal_length_pairs(atjt_script):
    rng = np.random.default_rng(0)
    lengths = rng.integers(1, 6, 300)
    label = rng.random(300) < lengths / 8
    scores = rng.random(300) + 0.5 * label
    wins = pairs = 0.0
    for i in np.flatnonzero(label):  # brute force over (noisy, clean) pairs of equal length
        for j in np.flatnonzero(~label & (lengths == lengths[i])):
            pairs += 1
            wins += 1.0 if scores[i] > scores[j] else 0.5 if scores[i] == scores[j] else 0.0
    assert atjt_script.auc_same_length(scores, label, lengths) == pytest.approx(wins / pairs)
    # length itself carries no signal once lengths are matched
    by_length = lengths.astype(np.float64)
    assert roc_auc(by_length, label) > 0.6
    assert atjt_script.auc_same_length(by_length, label, lengths) == pytest.approx(0.5)


def test_input_sums_and_last_instances_match_the_batches(atjt_script):
    config = load_config(overrides=["dataset=synthetic", "max_len=7", "noise.kind=replace",
                                    "noise.ratio=0.2", "noise.users=0.5"])
    split = prepare(config)
    held, lengths = atjt_script.input_sums(split.log.is_noise, split, 7)
    rows = Batcher(split.log, 7, torch.device("cpu")).prefix(
        torch.as_tensor(split.train_users), torch.as_tensor(split.train_targets)).rows.numpy()
    present = rows >= 0
    assert np.array_equal(lengths, present.sum(1))
    assert np.array_equal(held, (split.log.is_noise[np.where(present, rows, 0)] & present).sum(1))
    last = atjt_script.last_instances(split)
    assert np.array_equal(np.sort(split.train_users[last]), np.unique(split.train_users))
    for index in last[:20]:  # each is its user's latest target
        mine = split.train_targets[split.train_users == split.train_users[index]]
        assert split.train_targets[index] == mine.max()
