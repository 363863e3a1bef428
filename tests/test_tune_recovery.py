"""``denoiserec tune`` when things go wrong: a worker killed (``kill -9``) during the study's last
trial, Ctrl-C while Optuna creates a trial, small floats and bad sections in the space, a
worker with another base configuration, and a late summary that must keep the best trial's
test."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest

from denoiserec.errors import ConfigError
from denoiserec.tuning import study as study_module
from denoiserec.tuning.space import check_space, parse_spec, trial_overrides
from denoiserec.tuning.study import tune
from tests.test_tune import BASE, SPACE, job, trials_of, write_log

optuna = pytest.importorskip("optuna")


def test_floats_below_1e_4_are_searched_and_bad_sections_are_one_line():
    spec = parse_spec({**SPACE, "space": {"train.weight_decay": {"choices": [0.0, 1.0e-5]},
                                         "train.lr": {"low": 1e-6, "high": 1e-3, "log": True}}},
                      "test")
    base = check_space(spec, None, list(BASE))  # JSON wrote 1e-05: a string to YAML
    assert base.train.weight_decay == 0.0
    assert trial_overrides(spec, {"train.weight_decay": 1e-5, "train.lr": 2.5e-6}) == [
        "train.weight_decay=1.0e-05", "train.lr=2.5e-06"]
    for bad, message in (({"train.lr": {"low": 0.1, "high": 0.5, "step": 0.0}}, "step must be"),
                         ({"train.lr": {"low": 0.1, "high": 0.5, "step": -0.1}}, "step must be")):
        with pytest.raises(ConfigError, match=message):
            parse_spec({**SPACE, "space": bad}, "test")
    for section in ("sampler", "pruner"):
        with pytest.raises(ConfigError, match=f"expected a '{section}' mapping"):
            parse_spec({**SPACE, section: [1]}, "test")


def test_a_worker_with_another_base_configuration_cannot_join_the_study(tmp_path):
    log = write_log(tmp_path / "log.csv")
    first = job(tmp_path, log, trials=1)
    tune(first)
    storage = f"sqlite:///{first.output / 'study.db'}"
    other = replace(job(tmp_path, log, output="elsewhere", trials=1), storage=storage,
                    overrides=(*first.overrides, "model.hidden_size=8"))
    with pytest.raises(ConfigError, match="another base configuration"):
        tune(other)


def test_a_study_whose_last_trial_was_killed_retries_it_and_tests_the_best(tmp_path,
                                                                           monkeypatch,
                                                                           capsys):
    """kill -9 during the study's only trial: Optuna looks for stale trials only when one
    starts, and with the budget spent none would start; the rerun must retry it."""
    log = write_log(tmp_path / "log.csv")
    tuned = job(tmp_path, log, trials=1)
    tuned = replace(tuned, overrides=(*tuned.overrides[:-1], "epochs=40", tuned.overrides[-1]))
    spec = json.dumps({**SPACE, "trials": 1})
    worker = subprocess.Popen(
        [sys.executable, "-c", "import json, sys; from pathlib import Path; "
         "from denoiserec.tuning.space import parse_spec; "
         "from denoiserec.tuning.study import TuneJob, tune; "
         "tune(TuneJob(parse_spec(json.loads(sys.argv[1]), 'test'), None, "
         "tuple(sys.argv[3:]), Path(sys.argv[2])))", spec, str(tuned.output),
         *tuned.overrides], cwd=Path(__file__).resolve().parents[1],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    last = tuned.output / "trials" / "0000" / "last.pt"
    deadline = time.monotonic() + 120
    while not last.exists() and worker.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    assert last.exists(), "the worker never saved an epoch"
    worker.send_signal(signal.SIGKILL)
    worker.wait()
    assert [t.state.name for t in trials_of(tuned.output)] == ["RUNNING"]
    monkeypatch.setattr(study_module, "GRACE_SECONDS", 2)
    monkeypatch.setattr(study_module, "HEARTBEAT_SECONDS", 1)
    capsys.readouterr()
    best = tune(tuned)
    out = capsys.readouterr().out
    assert "resumed from epoch" in out and best is not None and best["test"]
    assert [t.state.name for t in trials_of(tuned.output)] == ["FAIL", "COMPLETE"]
    assert (tuned.output / "best.json").is_file()


def test_ctrl_c_while_a_trial_is_created_never_retries_a_finished_one(tmp_path, monkeypatch,
                                                                      capsys):
    tuned = job(tmp_path, write_log(tmp_path / "log.csv"), trials=2)
    made = study_module.trial_sampler

    def interrupted_in_ask(job_, trials_so_far):
        sampler = made(job_, trials_so_far)
        if trials_so_far == 1:  # the second trial: SIGINT while Optuna creates it
            original = sampler.before_trial

            def before_trial(study, trial):
                os.kill(os.getpid(), signal.SIGINT)
                original(study, trial)
            sampler.before_trial = before_trial
        return sampler

    monkeypatch.setattr(study_module, "trial_sampler", interrupted_in_ask)
    with pytest.raises(KeyboardInterrupt):
        tune(tuned)
    trials = trials_of(tuned.output)
    assert [t.state.name for t in trials] == ["COMPLETE", "FAIL", "WAITING"]
    assert trials[2].system_attrs["failed_trial"] == 1  # the new trial, not finished trial 0
    monkeypatch.setattr(study_module, "trial_sampler", made)
    capsys.readouterr()
    assert tune(tuned)["test"]
    assert capsys.readouterr().out.count("[tune] trial") == 1  # the retry only


def test_a_late_summary_keeps_the_best_trials_test(tmp_path):
    from denoiserec.tuning.outputs import write_outputs

    tuned = job(tmp_path, write_log(tmp_path / "log.csv"), trials=1)
    best = tune(tuned)
    storage = optuna.storages.RDBStorage(f"sqlite:///{tuned.output / 'study.db'}")
    study = optuna.load_study(study_name="denoiserec", storage=storage)
    write_outputs(study, tuned.output, tested=None)  # a worker that saw the study busy
    assert json.loads((tuned.output / "best.json").read_text())["test"] == best["test"]
    assert "test (once)" in (tuned.output / "summary.md").read_text()
