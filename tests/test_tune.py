"""``denoiserec tune``: the space is checked before anything trains, trials are run folders
that never touch the test set, what Optuna stores equals what the runs measured, an
interrupted study resumes without repeating finished trials, and the best trial is tested
once."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from denoiserec.cli import main
from denoiserec.errors import ConfigError
from denoiserec.tuning.space import load_spec, parse_spec, preset_names
from denoiserec.tuning.study import TuneJob, tune

optuna = pytest.importorskip("optuna")

# a trailing mean of 2 evaluations, so that the selection value differs from the raw metric
BASE = ("model.hidden_size=16", "model.inner_size=32", "model.n_layers=1", "batch_size=64",
        "train.progress=false", "max_len=10", "train.patience=100", "epochs=3",
        "train.selection_window=2")
SPACE = {"trials": 3, "sampler": {"startup_trials": 2, "seed": 0},
         "pruner": {"kind": "none"},
         "space": {"train.lr": {"low": 1e-3, "high": 1e-2, "log": True},
                   "model.hidden_dropout": {"choices": [0.1, 0.3]}}}


def write_log(path: Path, n_users: int = 40, n_items: int = 30) -> Path:
    """A small CSV log (user, item, timestamp): every user 10-16 interactions."""
    import numpy as np

    rng = np.random.default_rng(3)
    lines = ["user_id,item_id,timestamp"]
    for user in range(n_users):
        for step in range(int(rng.integers(10, 17))):
            lines.append(f"u{user},i{rng.integers(1, n_items + 1)},{step}")
    path.write_text("\n".join(lines) + "\n")
    return path


def job(tmp_path: Path, log: Path, output: str = "study", **spec_changes) -> TuneJob:
    spec = parse_spec({**SPACE, **spec_changes}, "test")
    return TuneJob(spec=spec, config=None, overrides=(*BASE, f"dataset={log}"),
                   output=tmp_path / output)


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tune")
    tuned = job(folder, write_log(folder / "log.csv"))
    best = tune(tuned)
    return tuned, best


def trials_of(output: Path):
    storage = optuna.storages.RDBStorage(f"sqlite:///{output / 'study.db'}")
    return optuna.load_study(study_name="denoiserec", storage=storage).get_trials()


def test_every_trial_is_a_run_folder_whose_history_optuna_holds(study):
    tuned, _ = study
    trials = trials_of(tuned.output)
    assert [t.state.name for t in trials] == ["COMPLETE"] * 3
    for trial in trials:
        run = tuned.output / trial.user_attrs["run_dir"]
        metrics = json.loads((run / "metrics.json").read_text())
        config = (run / "config.yaml").read_text()
        assert (run / "fingerprint.json").is_file() and metrics["finished"]
        assert f"lr: {trial.params['train.lr']}" in config
        selection = {e["epoch"]: e["selection_value"] for e in metrics["epochs"]}
        assert trial.intermediate_values == pytest.approx(selection)
        assert trial.value == pytest.approx(selection[metrics["best_epoch"]])


def test_only_the_best_trial_is_tested_and_only_once(study, monkeypatch):
    tuned, best = study
    trials = trials_of(tuned.output)
    top = max(trials, key=lambda t: t.value)
    assert best["trial"] == top.number
    for trial in trials:
        run = tuned.output / trial.user_attrs["run_dir"]
        metrics = json.loads((run / "metrics.json").read_text())
        tested = trial.number == top.number
        assert bool(metrics.get("test")) == tested
        assert (run / "test_ranks.csv").is_file() == tested
    recorded = json.loads((tuned.output / "best.json").read_text())
    assert recorded["test"] == json.loads(
        (tuned.output / recorded["run_dir"] / "metrics.json").read_text())["test"]
    from denoiserec.train.trainer import Trainer

    def no_evaluation(*_):
        raise AssertionError("the best trial was evaluated again")

    monkeypatch.setattr(Trainer, "evaluate", no_evaluation)
    assert tune(tuned)["test"] == recorded["test"]  # nothing left to train or test


def test_an_interrupted_study_resumes_without_repeating_finished_trials(tmp_path,
                                                                        monkeypatch, capsys):
    tuned = job(tmp_path, write_log(tmp_path / "log.csv"))
    calls = {"n": 0}

    def second_trial_interrupted():
        from denoiserec.train.trainer import Trainer

        original = Trainer.save_last

        def save(self):
            original(self)
            if self.run_dir.name == "0001" and self.state.epoch == 2:
                calls["n"] += 1
                raise KeyboardInterrupt
        monkeypatch.setattr(Trainer, "save_last", save)
        try:
            tune(tuned)
        finally:
            monkeypatch.setattr(Trainer, "save_last", original)

    with pytest.raises(KeyboardInterrupt):
        second_trial_interrupted()
    first = json.loads((tuned.output / "trials" / "0000" / "metrics.json").read_text())
    assert calls["n"] == 1
    states = [t.state.name for t in trials_of(tuned.output)]
    assert states == ["COMPLETE", "FAIL", "WAITING"]  # the interrupted one queued again
    capsys.readouterr()
    tune(tuned)
    out = capsys.readouterr().out
    assert "resumed from epoch 2" in out  # the retry went on in the interrupted folder
    trials = trials_of(tuned.output)
    assert [t.state.name for t in trials] == ["COMPLETE", "FAIL", "COMPLETE", "COMPLETE"]
    assert trials[2].user_attrs["run_dir"] == "trials/0001"
    assert out.count("[tune] trial") == 2  # the retry and the third; trial 0 not again
    again = json.loads((tuned.output / "trials" / "0000" / "metrics.json").read_text())
    assert again["epochs"] == first["epochs"]


def test_the_space_is_checked_before_anything_trains(tmp_path):
    log = write_log(tmp_path / "log.csv")
    bad_key = {"model.hidden_dropot": {"low": 0.0, "high": 0.5}}
    with pytest.raises(ConfigError, match="space.model.hidden_dropot"):
        tune(job(tmp_path, log, space=bad_key))
    with pytest.raises(ConfigError, match="space.train.lr = 0"):
        tune(job(tmp_path, log, space={"train.lr": {"choices": [0.0, 0.1]}}))
    with pytest.raises(ConfigError, match="log range needs low > 0"):
        parse_spec({"space": {"train.lr": {"low": 0.0, "high": 1.0, "log": True}}}, "x")
    with pytest.raises(ConfigError, match="give low and high"):
        parse_spec({"space": {"train.lr": {"low": 0.1}}}, "x")
    assert not (tmp_path / "study" / "trials").exists()


def test_a_study_folder_refuses_another_space(study):
    tuned, _ = study
    other = job(tuned.output.parent, Path(tuned.overrides[-1].split("=", 1)[1]),
                space={"train.lr": {"low": 1e-4, "high": 1e-2, "log": True}})
    with pytest.raises(ConfigError, match="another search space"):
        tune(other)


@pytest.mark.parametrize("name", preset_names())
def test_every_preset_loads_on_its_model(name, tmp_path):
    from denoiserec.tuning.space import check_space

    model = {"atjt": "sasrec", "sasrec-fast": "sasrec"}.get(name, name)
    extra = ["train.reweight=atjt"] if name == "atjt" else []
    spec = load_spec(name)
    check_space(spec, None, [f"model={model}", *extra])


def test_cli_errors_are_one_line(tmp_path, capsys):
    (tmp_path / "space.yaml").write_text("trials: 2\nspace: {train.lr: {low: 1, high: 0}}\n")
    assert main(["tune", str(tmp_path / "space.yaml"), "--output", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "must be below high" in err
    assert main(["tune", "no-such-preset"]) == 2
    assert "presets: atjt" in capsys.readouterr().err


def test_a_restarted_worker_does_not_repeat_its_draws(tmp_path):
    from dataclasses import replace

    first = job(tmp_path, write_log(tmp_path / "log.csv"), trials=1)
    tune(first)
    tune(replace(first, spec=replace(first.spec, trials=2)))  # the same worker, started again
    trials = trials_of(first.output)
    assert len(trials) == 2
    assert trials[0].params["train.lr"] != trials[1].params["train.lr"]


def test_tune_refuses_torchrun(monkeypatch, tmp_path):
    """Trials prune themselves one process at a time: under torchrun a pruned rank would leave
    the others waiting, so the command says what to do instead."""
    from denoiserec.tuning import TuneJob, load_spec, tune

    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(ConfigError, match="does not run under torchrun"):
        tune(TuneJob(spec=load_spec("sasrec-fast"), config=None, overrides=(),
                     output=tmp_path / "study", storage=None, worker=0))
    assert not (tmp_path / "study").exists()

