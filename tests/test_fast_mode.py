"""The fast mode (all-position windows) and its training options, against brute force."""

from __future__ import annotations

import collections
import math

import pytest
import torch
import torch.nn.functional as F

from denoiserec.data.synthetic import SyntheticConfig, generate
from denoiserec.errors import ConfigError
from denoiserec.nn.losses import cross_entropy
from denoiserec.run import make_trainer, prepare, train_config
from denoiserec.runconfig import load_config

TINY = ["model.hidden_size=16", "model.inner_size=32", "model.n_layers=1", "batch_size=8",
        "train.progress=false", "max_len=6", "train.patience=100"]


@pytest.fixture(scope="module")
def log():
    return generate(SyntheticConfig(n_users=30, n_items=40, mean_length=15, seed=3))


def _counted_targets(trainer, epoch: int) -> collections.Counter:
    """(user, target row) of every position that carries a target in ``epoch``'s batches."""
    trainer.instances = trainer._instances(epoch)
    seen: collections.Counter = collections.Counter()
    for index in trainer._batches(epoch):
        batch = trainer._batch(index)
        has = batch.targets != 0
        rows = batch.rows + 1  # window targets are the rows after the inputs
        for user, row in zip(batch.users[:, None].expand_as(rows)[has].tolist(),
                             rows[has].tolist(), strict=True):
            seen[user, row] += 1
    return seen


@pytest.mark.parametrize("extra", [[], ["train.window_stride=2"], ["train.window_offsets=true"],
                                   ["train.window_stride=4", "train.window_offsets=true"]])
def test_every_training_target_counts_exactly_once_per_epoch(log, tmp_path, extra):
    config = load_config(overrides=[*TINY, "train.instances=window", *extra])
    split = prepare(config, log)
    trainer = make_trainer(config, split, tmp_path)
    expected = collections.Counter(zip(split.train_users.tolist(),
                                       split.train_targets.tolist(), strict=True))
    for epoch in (0, 1):
        assert _counted_targets(trainer, epoch) == expected


def test_offsets_move_the_cut_points_between_epochs(log, tmp_path):
    config = load_config(overrides=[*TINY, "train.instances=window", "train.window_offsets=true"])
    trainer = make_trainer(config, prepare(config, log), tmp_path)
    first, second = trainer._instances(0).ends, trainer._instances(1).ends
    assert not (len(first) == len(second) and torch.equal(first, second))
    assert torch.equal(trainer._instances(1).ends, second)  # seeded by (seed, epoch)


def test_label_smoothing_matches_its_definition():
    torch.manual_seed(0)
    hidden, items = torch.randn(5, 4), torch.randn(9, 4)
    targets = torch.tensor([1, 0, 3, 8, 2])  # 0 = no target
    eps = 0.1
    logp = (hidden @ items.T).log_softmax(-1)[targets != 0]
    real = targets[targets != 0]
    expected = ((1 - eps) * -logp[torch.arange(len(real)), real] - eps * logp.mean(-1)).mean()
    got = cross_entropy(hidden, items, targets, label_smoothing=eps)
    assert float(got) == pytest.approx(float(expected), rel=1e-6)
    assert float(cross_entropy(hidden, items, targets)) == pytest.approx(
        float(F.cross_entropy(hidden[targets != 0] @ items.T, real)), rel=1e-6)


def test_selection_uses_the_trailing_mean(log, tmp_path):
    result = train_config(load_config(overrides=[*TINY, "epochs=4", "train.instances=window",
                                                 "train.selection_window=3"]), tmp_path, log)
    values = [e["valid"]["ndcg@10"] for e in result.history]
    for epoch, entry in enumerate(result.history):
        window = values[max(0, epoch - 2):epoch + 1]
        assert entry["selection_value"] == pytest.approx(sum(window) / len(window))
    best = max(range(4), key=lambda e: (round(result.history[e]["selection_value"], 4), e))
    assert result.best_epoch == best


@pytest.mark.parametrize(("overrides", "message"), [
    (["train.window_stride=2"], "need train.instances=window"),
    (["train.instances=window", "train.window_stride=7"], "at most data.max_len"),
    (["train.loss=bpr", "train.label_smoothing=0.1"], "needs train.loss=ce"),
    (["train.selection_window=0"], "selection_window"),
])
def test_bad_fast_mode_settings_are_refused(log, tmp_path, overrides, message):
    with pytest.raises(ConfigError, match=message):
        config = load_config(overrides=[*TINY, *overrides])
        make_trainer(config, prepare(config, log), tmp_path)


def test_sampled_softmax_trains(log, tmp_path):
    config = load_config(overrides=[*TINY, "epochs=2", "train.loss=sampled",
                                    "train.n_negatives=20"])
    result = train_config(config, tmp_path, log)
    assert all(math.isfinite(e["train_loss"]) for e in result.history)


def test_bert4rec_windows_are_whole_training_sequences(log, tmp_path):
    """Cloze in the fast mode: each window is the last <= max_len training items before its
    end, the last training item included (it has no next-item target to lose)."""
    config = load_config(overrides=[*TINY, "model=bert4rec", "train.instances=window",
                                    "epochs=1"])
    split = prepare(config, log)
    trainer = make_trainer(config, split, tmp_path)
    batch = trainer._batch(torch.arange(len(trainer.instances.users)))
    last_rows = batch.rows.gather(1, (batch.lengths - 1)[:, None]).squeeze(1)
    assert torch.equal(last_rows + 1, trainer.instances.ends)
    covered = set(batch.rows[batch.rows >= 0].tolist())
    starts = split.log.offsets[:-1]
    expected = {r for u in range(split.log.n_users) for r in range(starts[u], split.train_end[u])}
    assert covered == expected
    result = train_config(config, tmp_path / "run", log)
    assert math.isfinite(result.history[0]["train_loss"])
