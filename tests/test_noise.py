"""Noise lab: injection exactness, surprise scores, compare and clean end to end."""

from __future__ import annotations

import json
import os

import numpy as np
import pandas as pd
import pytest

from denoiserec.cli import main
from denoiserec.data.synthetic import SyntheticConfig, generate
from denoiserec.errors import ConfigError, DataError
from denoiserec.noise import NoiseConfig, inject
from denoiserec.noise.detection import roc_auc
from denoiserec.noise.scores import surprise_scores
from denoiserec.protocols import ProtocolConfig, leave_one_out, split
from denoiserec.run import restore, train_config
from denoiserec.runconfig import load_config

STRATEGIES = ["replace", "insert", "popular", "off-interest"]


@pytest.fixture(scope="module")
def log():
    return generate(SyntheticConfig(n_users=40, n_items=60, mean_length=15, seed=2))


@pytest.mark.parametrize("kind", STRATEGIES)
def test_injection_counts_positions_labels_and_untouched_evaluation(log, kind):
    config = NoiseConfig(kind=kind, ratio=0.3, seed=1)
    noisy = inject(log, config)
    _, train_end, valid, test = leave_one_out(log)
    n_train = train_end - log.offsets[:-1]
    expected = np.rint(0.3 * n_train).astype(int)
    for user in range(log.n_users):
        clean_seq = log.sequence(user)
        seq = noisy.sequence(user)
        labels = noisy.is_noise[noisy.offsets[user]:noisy.offsets[user + 1]]
        assert labels.sum() == expected[user]
        assert np.array_equal(seq[-2:], clean_seq[-2:])  # valid and test targets untouched
        assert not labels[-2:].any()
        if kind == "replace":
            assert len(seq) == len(clean_seq)
            assert np.array_equal(seq[~labels], clean_seq[~labels])
            assert (seq[labels] != clean_seq[labels]).all()
        else:
            assert len(seq) == len(clean_seq) + expected[user]
            assert np.array_equal(seq[~labels], clean_seq)  # originals keep their order
    # the split trains on the noisy log and evaluates on the clean one
    parts = split(noisy, ProtocolConfig(), eval_log=log)
    assert np.array_equal(parts.test.targets, test)
    assert np.array_equal(parts.valid.targets, valid)
    assert log.is_noise is None  # the input log is not modified


@pytest.mark.parametrize("kind", STRATEGIES)
def test_same_seed_same_noise(log, kind):
    first = inject(log, NoiseConfig(kind=kind, ratio=0.2, seed=4))
    again = inject(log, NoiseConfig(kind=kind, ratio=0.2, seed=4))
    other = inject(log, NoiseConfig(kind=kind, ratio=0.2, seed=5))
    assert np.array_equal(first.items, again.items)
    assert np.array_equal(first.is_noise, again.is_noise)
    assert not np.array_equal(first.is_noise, other.is_noise) or not np.array_equal(
        first.items, other.items)


def test_global_ratio_and_timestamps(log):
    noisy = inject(log, NoiseConfig(kind="insert", ratio=0.25, per="global", seed=0))
    _, train_end, _, _ = leave_one_out(log)
    total = (train_end - log.offsets[:-1]).sum()
    assert noisy.is_noise.sum() == round(0.25 * total)
    same_user = np.diff(noisy.row_users) == 0
    assert (np.diff(noisy.timestamps)[same_user] >= 0).all()  # still time-ordered


@pytest.mark.parametrize("per", ["sequence", "global"])
def test_a_share_of_users_is_corrupted_and_the_rest_left_clean(log, per):
    noisy = inject(log, NoiseConfig(kind="replace", ratio=0.3, per=per, users=0.5, seed=3))
    _, train_end, _, _ = leave_one_out(log)
    n_train = train_end - log.offsets[:-1]
    per_user = np.bincount(noisy.row_users[noisy.is_noise], minlength=log.n_users)
    corrupted = per_user > 0
    if per == "sequence":  # exactly the share; the ratio holds inside each corrupted sequence
        assert corrupted.sum() == log.n_users // 2
        assert np.array_equal(per_user[corrupted], np.rint(0.3 * n_train[corrupted]))
    else:  # noise lands only on the share, and a few of them may draw none
        assert log.n_users // 2 - 3 <= corrupted.sum() <= log.n_users // 2
        assert per_user.sum() >= round(0.3 * n_train[corrupted].sum())
        assert per_user.sum() < 0.75 * round(0.3 * n_train.sum())
    clean_rows = ~corrupted[noisy.row_users]
    assert np.array_equal(noisy.items[clean_rows], log.items[clean_rows])
    everyone = inject(log, NoiseConfig(kind="replace", ratio=0.3, per=per, users=1.0, seed=3))
    hit = np.bincount(everyone.row_users[everyone.is_noise], minlength=log.n_users) > 0
    assert hit.sum() >= log.n_users - 3 > corrupted.sum()


def test_off_interest_items_are_less_typical_than_uniform(log):
    far = inject(log, NoiseConfig(kind="off-interest", ratio=0.3, seed=0))
    uniform = inject(log, NoiseConfig(kind="insert", ratio=0.3, seed=0))

    def overlap(noisy):  # share of noise items that the user also has as a real item
        hits = [noisy.items[r] in set(log.sequence(noisy.row_users[r]).tolist())
                for r in np.flatnonzero(noisy.is_noise)]
        return np.mean(hits)

    assert overlap(far) <= overlap(uniform)


def test_bad_noise_settings_are_errors(log):
    with pytest.raises(ConfigError, match="noise.kind must be one of"):
        inject(log, NoiseConfig(kind="shuffle", ratio=0.1))
    with pytest.raises(ConfigError, match=r"noise.users must be in \(0, 1\]"):
        NoiseConfig(kind="replace", ratio=0.1, users=0.0)
    with pytest.raises(ConfigError, match="did you mean 'ratio'"):
        load_config(overrides=["noise.ration=0.1"])


TINY = ["model.hidden_size=16", "model.inner_size=32", "model.n_layers=1", "batch_size=64",
        "train.progress=false", "max_len=10", "epochs=3"]


@pytest.fixture(scope="module")
def trained(log, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("run") / "run"
    train_config(load_config(overrides=TINY), run_dir, log)
    return run_dir


def test_surprise_scores_are_rank_percentiles(log, trained):
    trainer = restore(trained, log=log)
    scores = surprise_scores(trainer.model, log, 10)
    assert scores.shape == (log.n_interactions,)
    assert ((scores >= 0) & (scores <= 1)).all()
    assert np.all(scores[log.offsets[:-1]] == 0.5)  # no prefix
    row = int(log.offsets[1] - 1)  # last item of user 0, scored from its prefix by hand
    batch = trainer.batcher.prefix(*map(lambda a: __import__("torch").tensor([a]), (0, row)))
    logits = trainer.model.score_all(batch)[0].detach()
    logits[0] = -float("inf")
    target = int(log.items[row])
    rank = 1 + int((logits > logits[target]).sum())
    assert scores[row] == pytest.approx((rank - 1) / (log.n_items - 1))


def test_surprise_finds_injected_noise_better_than_chance(log, trained):
    noisy = inject(log, NoiseConfig(kind="insert", ratio=0.3, seed=0))
    trainer = restore(trained, log=log)
    scores = surprise_scores(trainer.model, noisy, 10)
    assert roc_auc(scores, noisy.is_noise) > 0.6


def test_compare_is_resumable_and_writes_its_outputs(log, tmp_path, monkeypatch):
    from denoiserec import compare as compare_module

    monkeypatch.setattr(compare_module, "load_log", lambda _: log)
    args = ["compare", "--models", "sasrec,gru4rec", "--dataset", "synthetic", "--noise",
            "0,0.2", "--seeds", "2", "--output", str(tmp_path / "cmp"),
            "--set", "epochs=1", "--set", "train.progress=false", "--set", "max_len=10",
            "--set", "batch_size=128"]
    assert main(args) == 0
    summary = json.loads((tmp_path / "cmp" / "summary.json").read_text())["summary"]
    assert len(summary) == 4 and all(s["seeds"] == 2 for s in summary)
    assert "p_vs_first" in [s for s in summary if s["model"] == "gru4rec"][0]
    noisy = [s for s in summary if s["noise"] == 0.2]
    assert all("detect_roc_auc" in s and 0 <= s["p_vs_clean"] <= 1 for s in noisy)
    for entry in noisy:
        clean = [s for s in summary if s["model"] == entry["model"] and s["noise"] == 0][0]
        assert entry["relative_change_vs_clean"] == pytest.approx(
            entry["ndcg@10"] / clean["ndcg@10"] - 1)
    assert (tmp_path / "cmp" / "robustness.png").stat().st_size > 0
    stamps = {p: p.stat().st_mtime for p in (tmp_path / "cmp" / "cells").glob("*/best.pt")}
    assert len(stamps) == 8
    assert main(args) == 0  # second run: nothing retrained
    assert {p: p.stat().st_mtime for p in stamps} == stamps


def test_clean_round_trips_a_log(log, trained, tmp_path, monkeypatch):
    from denoiserec import clean as clean_module

    monkeypatch.setattr(clean_module, "load_log", lambda _: log)
    users = log.user_tokens[log.row_users]
    frame = pd.DataFrame({"user_id": users, "item_id": log.item_tokens[log.items],
                          "timestamp": log.timestamps, "extra": np.arange(log.n_interactions)})
    source = tmp_path / "log.csv"
    frame.to_csv(source, index=False)
    before = source.read_bytes()
    out = tmp_path / "clean.csv"
    assert main(["clean", "--run", str(trained), "--input", str(source), "--output", str(out),
                 "--drop-ratio", "0.1"]) == 0
    scored = pd.read_csv(tmp_path / "clean.scored.csv")
    cleaned = pd.read_csv(out)
    assert source.read_bytes() == before
    assert list(scored.columns) == [*frame.columns, "noise_score"]
    assert list(cleaned.columns) == list(frame.columns)
    dropped = set(frame["extra"]) - set(cleaned["extra"])
    assert len(dropped) == round(0.1 * len(frame))
    top = scored.sort_values("noise_score", ascending=False, kind="stable")["extra"]
    assert dropped == set(top.iloc[: len(dropped)])
    assert cleaned["extra"].is_monotonic_increasing  # input order kept


def test_clean_keep_last_never_drops_a_users_last_rows(log, trained, tmp_path, monkeypatch):
    from denoiserec import clean as clean_module

    monkeypatch.setattr(clean_module, "load_log", lambda _: log)
    frame = pd.DataFrame({"user_id": log.user_tokens[log.row_users],
                          "item_id": log.item_tokens[log.items], "timestamp": log.timestamps,
                          "extra": np.arange(log.n_interactions)})
    source = tmp_path / "log.csv"
    frame.to_csv(source, index=False)
    out = tmp_path / "clean.csv"
    assert main(["clean", "--run", str(trained), "--input", str(source), "--output", str(out),
                 "--drop-ratio", "0.3", "--keep-last", "2"]) == 0
    scored = pd.read_csv(tmp_path / "clean.scored.csv")
    kept = set(pd.read_csv(out)["extra"])
    # brute force: each user's last two rows by time (the file is in training order)
    last_two = set(frame.groupby("user_id", sort=False)["extra"].apply(
        lambda rows: list(rows)[-2:]).explode())
    assert last_two <= kept
    candidates = scored[~scored["extra"].isin(last_two)]
    dropped = set(frame["extra"]) - kept
    assert len(dropped) == round(0.3 * len(candidates))
    top = candidates.sort_values("noise_score", ascending=False, kind="stable")["extra"]
    assert dropped == set(top.iloc[: len(dropped)])


def test_subset_keeps_users_vocabulary_and_order(log):
    keep = np.random.default_rng(0).random(log.n_interactions) < 0.7
    part = log.subset(keep)
    assert part.n_users == log.n_users and part.n_items == log.n_items
    for user in range(log.n_users):
        rows = np.arange(log.offsets[user], log.offsets[user + 1])
        assert part.sequence(user).tolist() == log.items[rows[keep[rows]]].tolist()
    assert np.array_equal(part.timestamps, log.timestamps[keep])


def test_clean_refuses_unknown_items_and_overwriting(log, trained, tmp_path, monkeypatch):
    from denoiserec import clean as clean_module

    monkeypatch.setattr(clean_module, "load_log", lambda _: log)
    source = tmp_path / "log.csv"
    pd.DataFrame({"user_id": ["a", "a", "a"], "item_id": ["i1", "zzz", "i2"],
                  "timestamp": [1, 2, 3]}).to_csv(source, index=False)
    with pytest.raises(DataError, match="1 rows have items the model does not know"):
        clean_module.clean(trained, source, tmp_path / "o.csv", threshold=0.5)
    with pytest.raises(DataError, match="would overwrite the input"):
        clean_module.clean(trained, source, source, threshold=0.5, unknown="keep")
    report = clean_module.clean(trained, source, tmp_path / "o.csv", threshold=2.0,
                                unknown="keep")
    assert report.unknown == 1 and report.flagged == 0
    assert len(pd.read_csv(tmp_path / "o.csv")) == 3


def test_native_scores_cover_every_interaction(log):
    from denoiserec.models import build_model
    from denoiserec.models.bert4rec import BERT4RecConfig
    from denoiserec.models.msdccl import MSDCCLConfig
    from denoiserec.noise.scores import native_scores

    backbone = BERT4RecConfig(hidden_size=16, inner_size=16)
    model = build_model(MSDCCLConfig(backbone=backbone, inner_size=32),
                        log.n_items, 10)
    scores = native_scores(model, log, 10)
    assert scores.shape == (log.n_interactions,)
    assert not np.isnan(scores).any() and ((scores >= 0) & (scores <= 1)).all()


def test_cell_lock_is_exclusive_and_stale_locks_are_taken_over(tmp_path):
    import subprocess
    import sys

    from denoiserec.compare import claimed

    cell = tmp_path / "cells" / "sasrec-noise0-seed1"
    with claimed(cell) as mine:
        assert mine and (tmp_path / "cells" / "sasrec-noise0-seed1.lock").read_text().split()[
            0] == str(os.getpid())
        with claimed(cell) as again:  # a live holder (here: ourselves) keeps it
            assert not again
    assert not (tmp_path / "cells" / "sasrec-noise0-seed1.lock").exists()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True).stdout.strip()
    (tmp_path / "cells" / "sasrec-noise0-seed1.lock").write_text(dead)
    with claimed(cell) as mine:
        assert mine


def test_compare_waits_for_a_cell_another_process_trains(log, tmp_path, monkeypatch, capsys):
    from denoiserec import compare as compare_module

    monkeypatch.setattr(compare_module, "load_log", lambda _: log)
    output = tmp_path / "cmp"
    lock = output / "cells" / "sasrec-noise0-seed2020.lock"
    lock.parent.mkdir(parents=True)
    lock.write_text(str(os.getppid()))  # a live process "trains" the cell
    monkeypatch.setattr(compare_module.time, "sleep", lambda _: lock.unlink())  # ... then dies
    rows = compare_module.compare(["sasrec"], "synthetic", "recbole", [0.0], "insert", 1,
                                  ["epochs=1", "train.progress=false", "max_len=10"], output)
    assert "waiting for sasrec-noise0-seed2020" in capsys.readouterr().out
    assert len(rows) == 1 and not lock.exists()


def test_compare_without_training_summarises_the_finished_cells_only(log, tmp_path, monkeypatch):
    from denoiserec import compare as compare_module

    monkeypatch.setattr(compare_module, "load_log", lambda _: log)
    output, overrides = tmp_path / "cmp", ["epochs=1", "train.progress=false", "max_len=10"]
    with pytest.raises(ConfigError, match="no finished cells to summarise"):
        compare_module.compare(["sasrec"], "synthetic", "recbole", [0.0], "insert", 1,
                               overrides, output, train=False)
    first = compare_module.compare(["sasrec"], "synthetic", "recbole", [0.0], "insert", 1,
                                   overrides, output)
    rows = compare_module.compare(["sasrec", "gru4rec"], "synthetic", "recbole", [0.0, 0.2],
                                  "insert", 2, overrides, output, train=False)
    assert rows == first  # the one finished cell; nothing else trained
    assert sorted(p.name for p in (output / "cells").iterdir()) == ["sasrec-noise0-seed2020"]
    summary = json.loads((output / "summary.json").read_text())["summary"]
    assert [(s["model"], s["noise"], s["seeds"]) for s in summary] == [("sasrec", 0.0, 1)]


def test_compare_overrides_scoped_to_one_model(tmp_path):
    from denoiserec.compare import Cell, cell_config, compare
    from denoiserec.errors import ConfigError

    base = ["dataset=synthetic", "sasrec:model.hidden_size=32", "msdccl:model.att_dropout=0.4",
            "msdccl:model.sequence_last_m=2", "msdccl:model.backbone.hidden_size=32"]
    msdccl = cell_config(base, Cell("msdccl", 0.0, 7), "insert")
    sasrec = cell_config(base, Cell("sasrec", 0.0, 7), "insert")  # lacks both keys: no error
    assert (msdccl.model.att_dropout, msdccl.model.sequence_last_m) == (0.4, 2)
    assert msdccl.model.width == sasrec.model.hidden_size == 32
    assert msdccl.model.backbone.inner_size == 100  # the rest of MSDCCL's default backbone
    assert sasrec.model.name == "sasrec" and sasrec.train.seed == 7
    with pytest.raises(ConfigError, match="scoped to bert4rec"):
        compare(["msdccl", "sasrec"], "synthetic", "recbole", [0.0], "insert", 1,
                ["bert4rec:model.inner_size=8"], tmp_path)
    with pytest.raises(ConfigError, match="att_dropout"):  # a scoped key is still checked
        cell_config(["msdccl:model.att_dropot=0.4"], Cell("msdccl", 0.0, 7), "insert")


def test_compare_unscoped_model_key_applies_to_the_cells_model(tmp_path):
    """An unscoped model.* key is read against the compared model, not the default model's
    (the first seed was read from a config of the default model: 'valid keys: ...' of SASRec)."""
    from denoiserec.compare import compare
    from denoiserec.errors import ConfigError

    with pytest.raises(ConfigError, match="no finished cells"):  # past every config check
        compare(["mgsd-wss"], "synthetic", "recbole", [0.0], "insert", 1,
                ["model.head_gradient=all", "max_len=10"], tmp_path / "out", train=False)
