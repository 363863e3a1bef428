"""Issue 28's guards, one test each: what gave a traceback, and what was accepted silently or
wrong, is refused (or warned) in one line before anything is written."""

from __future__ import annotations

import json
import os
import pickle
import shutil
from pathlib import Path

import pandas as pd
import pytest

from denoiserec.cli import main
from denoiserec.errors import CheckpointError, ConfigError, DataError, ProtocolError
from denoiserec.run import evaluate_run, train, train_config
from denoiserec.runconfig import load_config
from tests.test_trust import TINY, write_log


def _one_line(capsys: pytest.CaptureFixture[str], prefix: str = "denoiserec: error:") -> str:
    err = capsys.readouterr().err.strip()
    assert err.startswith(prefix) and "\n" not in err, err
    return err


def _sets(*overrides: str) -> list[str]:
    return [arg for s in overrides for arg in ("--set", s)]


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished tiny SASRec run (copy it before changing it)."""
    folder = tmp_path_factory.mktemp("trained")
    log = write_log(folder / "a.csv")
    train(dataset=str(log), overrides=TINY, output=folder / "run")
    return folder / "run"


def _copy(run: Path, target: Path) -> Path:
    shutil.copytree(run, target)
    return target


# ------------------------------------------------------------------- causes of a traceback


@pytest.mark.parametrize(("model", "extra", "message"), [
    ("mgsd-wss", ["train.loss=sampled", "train.n_negatives=5"],
     "train.loss=sampled: mgsd-wss trains with ce or bpr only"),
    ("mgsd-wss", ["train.loss=sampled", "train.n_negatives=5", "train.reweight=atjt"],
     "train.loss=sampled: mgsd-wss trains with ce or bpr only"),
    ("msdccl", ["train.loss=sampled", "train.n_negatives=5"], "msdccl trains with ce or bpr"),
    ("bert4rec", ["train.loss=bpr"], "bert4rec trains with ce only"),
    ("bert4rec", ["train.label_smoothing=0.1"], "bert4rec's loss does not use it"),
])
def test_a_loss_the_model_does_not_implement_is_refused_before_anything_is_written(
        tmp_path, capsys, model, extra, message):
    log, out = write_log(tmp_path / "a.csv"), tmp_path / "out"
    quick = [s for s in TINY if not s.startswith("model.")]
    argv = ["train", "--model", model, "--dataset", str(log), "--output", str(out)]
    assert main([*argv, *_sets(*quick, *extra)]) == 2
    assert message in _one_line(capsys)
    assert not out.exists()


def test_evaluate_refuses_a_run_whose_config_yaml_was_edited(trained, tmp_path):
    run = _copy(trained, tmp_path / "run")
    config = run / "config.yaml"
    config.write_text(config.read_text().replace("hidden_size: 16", "hidden_size: 32"))
    with pytest.raises(ConfigError, match=r"config.yaml was edited after training \(model."
                                          r"hidden_size 16, now 32\)"):
        evaluate_run(run)


def test_weights_of_other_shapes_are_refused_naming_both_shapes(trained, tmp_path):
    run = _copy(trained, tmp_path / "run")  # config.yaml and fingerprint.json both edited
    config = run / "config.yaml"
    config.write_text(config.read_text().replace("hidden_size: 16", "hidden_size: 32"))
    fingerprint = json.loads((run / "fingerprint.json").read_text())
    fingerprint["config"]["model"]["hidden_size"] = 32
    (run / "fingerprint.json").write_text(json.dumps(fingerprint))
    with pytest.raises(CheckpointError, match=r"best.pt: .* has shape \(\d+, 16\) but the "
                                              r"configuration builds \(\d+, 32\)"):
        evaluate_run(run)


def test_parameter_bytes_equal_a_real_build_and_too_large_a_model_is_refused(tmp_path,
                                                                              monkeypatch):
    from denoiserec.models import build_model
    from denoiserec.train import memory

    config = load_config(overrides=["model=msdccl"])
    real = build_model(config.model, 60, 10)
    expected = sum(t.numel() * t.element_size()
                   for t in [*real.parameters(), *real.buffers()])
    assert memory.parameter_bytes(config.model, 60, 10)[0] == expected
    monkeypatch.setattr(memory, "available_memory", lambda: 2**20)  # 1 MiB free
    log = write_log(tmp_path / "a.csv")
    big = load_config(overrides=[*TINY, f"dataset={log}", "model.hidden_size=512"])
    with pytest.raises(ConfigError, match=r"need at least \d+\.\d MiB .* largest .*512.* "
                                          r"cpu has 1.0 MiB free"):
        train_config(big, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_a_large_catalogue_trained_on_sampled_negatives_is_not_refused(monkeypatch):
    # issue 29's scale-out path (1M items, train.loss=sampled, windows): the estimate counted
    # scores over the whole catalogue for every loss (143 GiB) and refused it after the merge
    from types import SimpleNamespace

    import numpy as np
    import torch

    from denoiserec.train import memory

    monkeypatch.setattr(memory, "available_memory", lambda: 4 * 2**30)  # 4 GiB free
    config = load_config(overrides=["model=sasrec", "data.max_len=50"])
    split = SimpleNamespace(log=SimpleNamespace(n_items=1_000_000,
                                                offsets=np.array([0, 60, 100])))

    def check(loss, processes=1, batch_size=256):
        memory.check_memory(config.model, split, 50, batch_size, True, torch.device("cpu"),
                            loss=loss, n_negatives=1024, processes=processes)

    check("sampled")
    check("bpr")
    with pytest.raises(ConfigError, match="need at least"):
        check("ce")
    with pytest.raises(ConfigError, match="need at least"):
        check("sampled", batch_size=2**17)
    check("sampled", processes=64, batch_size=2**17)  # each process holds its share


# -------------------------------------------------------------- accepted silently, or wrong


def test_a_header_naming_a_column_twice_is_refused(tmp_path):
    frame = pd.read_csv(write_log(tmp_path / "a.csv"))
    frame.insert(1, "kind", "view")
    frame.set_axis(["user_id", "item_id", "item_id", "timestamp", "note"], axis=1).to_csv(
        tmp_path / "dup.csv", index=False)
    config = load_config(overrides=[*TINY, f"dataset={tmp_path / 'dup.csv'}"])
    with pytest.raises(DataError, match="dup.csv:1: column 'item_id' appears 2 times"):
        train_config(config, tmp_path / "out")


def test_a_one_item_catalogue_does_not_train(tmp_path):
    frame = pd.read_csv(write_log(tmp_path / "a.csv")).assign(item_id="same")
    frame.to_csv(tmp_path / "one.csv", index=False)
    config = load_config(overrides=[*TINY, f"dataset={tmp_path / 'one.csv'}"])
    with pytest.raises(DataError, match="a catalogue of 1 item"):
        train_config(config, tmp_path / "out")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(("kind", "cell", "message"), [
    ("float", "cheap", r"x.inter:9: price 'cheap' is not a finite number"),
    ("float_seq", "1.5 n/a", r"x.inter:9: price value 'n/a' is not a finite number"),
])
def test_an_inter_files_declared_float_types_are_checked(tmp_path, kind, cell, message):
    from denoiserec.data.readers import read_atomic

    lines = ["user_id:token\titem_id:token\tprice:" + kind]
    lines += [f"u1\ti{k}\t2.5" for k in range(10)]
    lines[8] = f"u1\ti7\t{cell}"
    (tmp_path / "x.inter").write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=message):
        read_atomic(tmp_path / "x.inter")


def test_a_run_without_its_fingerprint_is_neither_evaluated_nor_resumed(trained, tmp_path):
    run = _copy(trained, tmp_path / "run")
    (run / "fingerprint.json").unlink()
    with pytest.raises(DataError, match="has checkpoints but no fingerprint.json"):
        evaluate_run(run)
    config = load_run_config_of(run)
    before = (run / "metrics.json").read_bytes()
    with pytest.raises(ConfigError, match="has checkpoints but no fingerprint.json"):
        train_config(config, run)
    assert (run / "metrics.json").read_bytes() == before
    assert not (run / "fingerprint.json").exists()


def load_run_config_of(run: Path):
    from denoiserec.fingerprints import load_run_config

    return load_run_config(run)


@pytest.mark.parametrize(("extra", "message"), [
    (["noise.users=0.5"], "noise.users does nothing without noise.ratio > 0"),
    (["protocol.mask_history=true"], "protocol.mask_history is read by protocol=target only"),
    (["protocol.n_negatives=50"], "protocol.n_negatives is read by protocol=sampled only"),
    (["noise.ratio=0.2", "noise.candidates=5"], "noise.candidates is read by "
                                                "noise.kind=off-interest only"),
    (["train.reweight=atjt", "train.atjt.replaced=20"],
     r"train.atjt.replaced \(20\) is more than a history holds \(data.max_len 10\)"),
])
def test_settings_that_would_do_nothing_are_refused(tmp_path, extra, message):
    config = load_config(overrides=[*TINY, f"dataset={write_log(tmp_path / 'a.csv')}", *extra])
    with pytest.raises(ConfigError, match=message):
        train_config(config, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_noise_settings_pass_to_the_compare_cells_that_inject_noise(tmp_path):
    from denoiserec.compare import compare

    log = write_log(tmp_path / "a.csv")
    cells = compare(["sasrec"], str(log), "recbole", [0.0, 0.2], "insert", 1,
                    [*TINY, "noise.users=0.5"], tmp_path / "R")
    assert len(cells) == 2


@pytest.mark.parametrize("loss", ["bpr", "sampled"])
def test_more_negatives_than_the_catalogue_are_refused(tmp_path, loss):
    config = load_config(overrides=[*TINY, f"dataset={write_log(tmp_path / 'a.csv')}",
                                    f"train.loss={loss}", "train.n_negatives=60"])
    with pytest.raises(ConfigError, match=r"train.n_negatives \(60\) must be below the "
                                          r"catalogue's 60 items"):
        train_config(config, tmp_path / "out")


def test_evaluate_refuses_a_ctr_models_run_under_a_ranking_protocol(tmp_path):
    log = write_log(tmp_path / "a.csv")
    run = tmp_path / "ctr"
    train(model="din", dataset=str(log), protocol="ctr", output=run,
          overrides=["epochs=1", "train.progress=false", "protocol.ctr.negatives=5"])
    with pytest.raises(ConfigError, match="this is a CTR model"):
        evaluate_run(run, protocol="recbole")


def test_evaluate_says_when_a_run_has_not_finished_training(trained, tmp_path):
    from denoiserec.atomic import start_time

    run = _copy(trained, tmp_path / "run")
    report = json.loads((run / "metrics.json").read_text())
    (run / "metrics.json").write_text(json.dumps({**report, "finished": False}))
    with pytest.warns(UserWarning, match=r"did not finish training \(1 epoch done"):
        evaluate_run(run)
    (run / ".lock").write_text(f"{os.getppid()} {start_time(os.getppid())}")
    with pytest.warns(UserWarning, match=f"still being trained by process {os.getppid()}"):
        evaluate_run(run)


def test_a_lock_whose_pid_was_reused_is_taken_over_and_a_live_one_names_the_way_out(tmp_path):
    from denoiserec.atomic import start_time

    config = load_config(overrides=[*TINY, f"dataset={write_log(tmp_path / 'a.csv')}"])
    run, parent = tmp_path / "run", os.getppid()
    run.mkdir()
    (run / ".lock").write_text(f"{parent} {start_time(parent)}")
    with pytest.raises(ConfigError, match=rf"process {parent} is not a denoiserec run, delete "
                                          r".*run/.lock"):
        train_config(config, run)
    (run / ".lock").write_text(f"{parent} 1")  # the pid now runs a process started later
    train_config(config, run)
    assert not (run / ".lock").exists()


def test_checkpoint_refusals_use_our_words_never_torchs_advice(tmp_path):
    from denoiserec.train.checkpoint import load_checkpoint, save_checkpoint

    class Code:
        def __reduce__(self) -> tuple:
            return (print, ("ran",))

    with open(tmp_path / "evil.pt", "wb") as handle:
        pickle.dump({"meta": {}, "model": Code()}, handle)
    save_checkpoint(tmp_path / "ok.pt", {"meta": {}, "model": {}})
    (tmp_path / "cut.pt").write_bytes((tmp_path / "ok.pt").read_bytes()[:200])
    for name, reason in (("evil.pt", "loading them could run code"),
                         ("cut.pt", "truncated or corrupt")):
        with pytest.raises(CheckpointError) as caught:
            load_checkpoint(tmp_path / name)
        assert reason in str(caught.value) and "weights_only" not in str(caught.value)


def test_retailrocket_under_target_names_its_buy_tokens(real_data):
    from denoiserec.protocols import ProtocolConfig, split
    from denoiserec.run import load_log

    config = load_config(overrides=["dataset=retailrocket", "protocol=target"])
    with pytest.raises(ProtocolError, match=r"--set protocol.target_behaviour=0,3"):
        split(load_log(config), ProtocolConfig(name="target"))
