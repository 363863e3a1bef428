"""Issue 28's newcomer's first hour, one test each: progress on piped output, the Python API's
output folder and string overrides, resolved dataset paths, ``datasets`` without ``--stats``, a
config of one model with ``--model`` of another, ``train.seed=0``, ``demo``'s scratch folder."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest

from denoiserec.cli import main
from denoiserec.errors import ConfigError
from denoiserec.run import evaluate_run, train
from denoiserec.runconfig import load_config
from denoiserec.train.settings import TrainConfig
from tests.test_trust import TINY, write_log

REPO = Path(__file__).resolve().parents[1]


def test_an_epoch_on_piped_output_prints_progress_lines(tmp_path, capsys):
    log = write_log(tmp_path / "a.csv")
    train(dataset=str(log), output=tmp_path / "run",
          overrides=[*TINY, "batch_size=16", "train.progress=true", "train.progress_seconds=0"])
    lines = [line for line in capsys.readouterr().out.splitlines()
             if line.startswith("epoch 0: batch ")]
    assert lines and lines[0].startswith("epoch 0: batch 1/") and "loss" in lines[0]
    train(dataset=str(log), output=tmp_path / "quiet",
          overrides=[*TINY, "batch_size=16", "train.progress_seconds=0"])  # progress off
    assert "epoch 0: batch" not in capsys.readouterr().out


def test_the_python_api_takes_one_override_string_and_says_where_it_writes(tmp_path, capsys,
                                                                           monkeypatch):
    assert load_config(overrides="epochs=3").train.epochs == 3
    monkeypatch.chdir(tmp_path)
    log = write_log(tmp_path / "a.csv")
    result = train(dataset=str(log), overrides=TINY)
    out = capsys.readouterr().out
    assert f"into a new folder {tmp_path / result.run_dir}" in out
    assert "no output given" in out and result.run_dir.parts[0] == "runs"


def test_a_run_stores_its_dataset_resolved_and_evaluates_from_elsewhere(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_log(tmp_path / "a.csv")
    train(dataset="a.csv", overrides=TINY, output="run")
    assert f"dataset: {tmp_path / 'a.csv'}" in (tmp_path / "run" / "config.yaml").read_text()
    (tmp_path / "sub").mkdir()
    monkeypatch.chdir(tmp_path / "sub")
    assert evaluate_run("../run")["test"].metrics


def test_a_run_of_an_earlier_version_with_a_relative_path_still_resumes(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_log(tmp_path / "a.csv")
    train(dataset="a.csv", overrides=TINY, output="run")
    for name in ("config.yaml", "fingerprint.json"):  # as an earlier version wrote them
        path = tmp_path / "run" / name
        path.write_text(path.read_text().replace(str(tmp_path / "a.csv"), "a.csv"))
    resumed = train(dataset="a.csv", overrides=[*TINY, "epochs=2"], output="run")
    assert len(resumed.history) == 2


def test_datasets_without_stats_says_how_to_get_the_counts(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("DENOISEREC_DATA", str(tmp_path))
    assert main(["datasets"]) == 0
    assert "run `denoiserec datasets --stats`" in capsys.readouterr().out


def test_a_config_of_one_model_with_model_of_another_names_the_conflict(capsys):
    config = REPO / "configs" / "msdccl-ml-100k.yaml"
    assert main(["train", "--config", str(config), "--model", "sasrec"]) == 2
    err = capsys.readouterr().err.strip()
    assert "configures model msdccl" in err and "drop --model" in err and "\n" not in err
    with pytest.raises(ConfigError, match="unknown config key 'model.backbone'"):
        load_config(overrides=["model.backbone.hidden_size=8"])  # no file: the plain error


def test_seed_zero_is_a_seed():
    assert TrainConfig(seed=0).seed == 0
    with pytest.raises(ConfigError, match=r"train.seed must be in \[0, inf\)"):
        TrainConfig(seed=-1)


def test_demo_leaves_no_temporary_folder(tmp_path, monkeypatch, capsys):
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    assert main(["demo", "--set", "epochs=1", "--set", "train.progress=false"]) == 0
    assert "temporary and is now removed" in capsys.readouterr().out
    assert list(scratch.iterdir()) == []
