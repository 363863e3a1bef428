"""No silently wrong result: fingerprints, settings passed through, one-line errors, clean on
every format, locks and permissions, labels on every number."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from denoiserec.cli import main
from denoiserec.compare import Cell, cell_config, compare
from denoiserec.data.log import RawLog
from denoiserec.data.preprocess import build_interactions
from denoiserec.data.synthetic import SyntheticConfig, generate
from denoiserec.errors import ConfigError, DataError
from denoiserec.run import evaluate_run, train_config
from denoiserec.runconfig import load_config

TINY = ["model.hidden_size=16", "model.inner_size=32", "model.n_layers=1", "batch_size=64",
        "train.progress=false", "max_len=10", "train.patience=100", "epochs=1"]


def write_log(path: Path, seed: int = 2, users: int = 40) -> Path:
    """A small synthetic log as a CSV (or, by suffix, an atomic .inter file with an extra
    column)."""
    log = generate(SyntheticConfig(n_users=users, n_items=60, mean_length=15, seed=seed))
    frame = pd.DataFrame({"user_id": log.user_tokens[log.row_users],
                          "item_id": log.item_tokens[log.items], "timestamp": log.timestamps,
                          "note": [f"n{i}" for i in range(log.n_interactions)]})
    if path.suffix == ".inter":
        frame.columns = ["user_id:token", "item_id:token", "timestamp:float", "note:token"]
        frame.to_csv(path, sep="\t", index=False)
    else:
        frame.to_csv(path, index=False)
    return path


def _compare(output: Path, dataset: Path, *extra: str, **options: object) -> list:
    return compare(["sasrec"], str(dataset), "recbole", [0.0], "insert", 1, [*TINY, *extra],
                   output, **options)


def _one_line_error(capsys: pytest.CaptureFixture[str], message: str) -> str:
    err = capsys.readouterr().err.strip()
    assert err.startswith("denoiserec: error:") and "\n" not in err, err
    assert message in err, err
    return err


# ------------------------------------------------------------------------ 1. fingerprints


def test_compare_refuses_a_cell_of_another_dataset_and_recomputes_it(tmp_path):
    from denoiserec.report.comparison import CellResult

    a, b, out = write_log(tmp_path / "a.csv"), write_log(tmp_path / "b.csv", 3), tmp_path / "R"
    first = _compare(out, a)
    assert isinstance(first[0], CellResult) and first[0].dataset == str(a)
    with pytest.raises(ConfigError, match=r"cell sasrec-noise0-seed2020 in .*R was trained on "
                                          r"another dataset \(.*a\.csv, now .*b\.csv\); use "
                                          r"another --output or --recompute"):
        _compare(out, b)
    with pytest.raises(ConfigError, match=r"another configuration \(train.lr 0.001, now 0.01\)"):
        _compare(out, a, "lr=0.01")
    again = _compare(out, b, recompute=True)
    assert again[0].dataset == str(b) and again[0].test != first[0].test
    header = (out / "results.csv").read_text().splitlines()[0].split(",")
    assert header[:6] == ["model", "noise", "seed", "dataset", "protocol", "best_epoch"]
    entry = json.loads((out / "summary.json").read_text())["summary"][0]
    assert (entry["dataset"], entry["protocol"]) == (str(b), "recbole")
    assert "| dataset" in (out / "summary.md").read_text()


def test_compare_resumes_a_cell_asked_for_more_epochs_and_refuses_fewer(tmp_path):
    a, out = write_log(tmp_path / "a.csv"), tmp_path / "R"
    _compare(out, a)
    two = _compare(out, a, "epochs=2")
    assert len(json.loads((two[0].run_dir / "metrics.json").read_text())["epochs"]) == 2
    with pytest.raises(ConfigError, match="has trained 2 epochs, more than train.epochs=1"):
        _compare(out, a)


def test_changed_data_is_refused_by_compare_and_evaluate(tmp_path, capsys):
    a, out = write_log(tmp_path / "a.csv"), tmp_path / "R"
    cell = _compare(out, a)[0].run_dir
    write_log(a, seed=4)  # same name, other content
    with pytest.raises(ConfigError, match="was trained on other data: .*a.csv now gives other "
                                          "sequences"):
        _compare(out, a)
    with pytest.raises(DataError, match="was trained on other data"):
        evaluate_run(cell)
    assert main(["evaluate", str(cell)]) == 2
    _one_line_error(capsys, "was trained on other data")


# ------------------------------------------------------------ 2. compare passes settings


def test_compare_cells_keep_the_loaded_noise_settings():
    base = ["dataset=synthetic", "noise.per=global", "noise.candidates=5",
            "noise.embedding_dim=4"]
    noise = cell_config(base, Cell("sasrec", 0.2, 7), "off-interest").noise
    assert (noise.kind, noise.ratio, noise.seed, noise.per, noise.candidates,
            noise.embedding_dim) == ("off-interest", 0.2, 7, "global", 5, 4)
    assert cell_config(base, Cell("sasrec", 0.0, 7), "insert").noise is None


@pytest.mark.parametrize(("models", "extra", "message"), [
    (["sasrec"], ["noise.ratio=0.3"], "compare sets noise.ratio for each cell; use --noise"),
    (["sasrec"], ["noise.kind=replace"], "use --noise-kind"),
    (["sasrec"], ["noise={kind: popular}"], "use --noise-kind"),
    (["sasrec"], ["dataset=ml-100k"], "use --dataset"),
    (["sasrec"], ["sasrec:model=gru4rec"], "use --models"),
    (["sasrec", "foo"], [], "unknown model 'foo'"),
    (["sasrec", "msdccl"], ["msdccl:train.instances=window"], "train.instances=window: "),
    (["sasrec", "sasrec"], [], "--models lists sasrec more than once"),
])
def test_compare_checks_every_model_and_setting_before_any_cell_trains(tmp_path, models, extra,
                                                                       message):
    log, quick = write_log(tmp_path / "a.csv"), ["epochs=1", "max_len=10", "train.progress=false"]
    with pytest.raises(ConfigError, match=message):
        compare(models, str(log), "recbole", [0.0], "insert", 1, [*quick, *extra],
                tmp_path / "R")
    assert not (tmp_path / "R").exists()


# ------------------------------------------------------------- 3. one-line errors, no writes


@pytest.mark.parametrize(("argv", "message"), [
    (["train", "--set", "lr=-1"], "train.lr must be in (0, inf); got -1"),
    (["train", "--set", "model.hidden_size=0"], "model.hidden_size must be in [1, inf)"),
    (["train", "--set", "model.hidden_size=15"], "must be a multiple of model.n_heads"),
    (["train", "--set", "max_len=0"], "data.max_len must be in [1, inf)"),
    (["train", "--set", "model.hidden_dropout=1.5"], "model.hidden_dropout must be in [0, 1)"),
    (["train", "--set", "noise.kind=replace", "--set", "noise.ratio=1.5"],
     "noise.ratio (kind replace) must be in [0, 1]"),
    (["train", "--set", "epoch=1"], "did you mean 'train.epochs'?"),
    (["train", "--set", "valid_metric=ndcg@10"], "did you mean 'train.valid_metric'?"),
    (["train", "--dataset", "ml100k"], "did you mean 'ml-100k'?"),
    (["train", "--set", "model.hidden_size=[1"], "cannot parse value '[1'"),
    (["compare", "--models", "sasrec", "--dataset", "synthetic", "--noise", "-0.1"],
     "--noise -0.1: noise.ratio (kind insert) must be in [0, 10)"),
    (["compare", "--models", "sasrec", "--dataset", "synthetic", "--noise", "1.5",
      "--noise-kind", "replace"], "--noise 1.5: noise.ratio (kind replace) must be in [0, 1]"),
    (["compare", "--models", "sasrec", "--dataset", "synthetic", "--seeds", "0"],
     "--seeds must be in [1, inf); got 0"),
    (["compare", "--models", "sasrec", "--dataset", "synthetic", "--noise", "0,0.1,0"],
     "--noise lists 0.0 more than once"),
])
def test_bad_values_are_one_line_errors_and_write_nothing(tmp_path, capsys, argv, message):
    out = tmp_path / "out"
    sets = [arg for s in TINY for arg in ("--set", s)]
    assert main([argv[0], *sets, *argv[1:], "--output", str(out)]) == 2
    _one_line_error(capsys, message)
    assert not out.exists()


def test_train_writes_nothing_until_the_model_builds_then_takes_the_corrected_command(
        tmp_path, capsys):
    log, out = write_log(tmp_path / "a.csv"), tmp_path / "run"
    argv = ["train", "--model", "bert4rec", "--dataset", str(log), "--output", str(out),
            *[arg for s in TINY for arg in ("--set", s)]]
    assert main([*argv, "--set", "train.window_stride=20", "--set", "train.instances=window"]
                ) == 2
    _one_line_error(capsys, "must be at most data.max_len")
    assert not out.exists()
    assert main(argv) == 0


def test_outputs_that_cannot_be_written_are_one_line_errors(tmp_path, capsys, monkeypatch):
    from denoiserec.errors import OutputError

    log, taken = write_log(tmp_path / "a.csv"), tmp_path / "taken.txt"
    taken.write_text("mine")
    sets = [arg for s in TINY for arg in ("--set", s)]
    assert main(["train", "--dataset", str(log), "--output", str(taken), *sets]) == 2
    _one_line_error(capsys, "is a file, not a denoiserec run directory")
    assert main(["compare", "--models", "sasrec", "--dataset", str(log), "--output", str(taken),
                 *sets]) == 2
    _one_line_error(capsys, "is a file")
    assert taken.read_text() == "mine"

    def disk_full(*_: object) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "replace", disk_full)
    args = ["train", "--dataset", str(log), "--output", str(tmp_path / "run"), *sets]
    assert main(args) == 2
    _one_line_error(capsys, "json: No space left on device")
    with pytest.raises(OutputError):
        main(["--debug", *args])
    monkeypatch.undo()

    def read_only(*_: object, **__: object) -> None:
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(tmp_path / "ro"))

    monkeypatch.setattr(Path, "mkdir", read_only)
    assert main(["train", "--dataset", str(log), "--output", str(tmp_path / "ro"), *sets]) == 2
    _one_line_error(capsys, "ro: Permission denied")


def test_broken_run_directories_and_thin_logs_are_one_line_errors(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text("model: [sasrec\n")
    assert main(["evaluate", str(run)]) == 2
    _one_line_error(capsys, "config.yaml: not valid YAML")
    (run / "config.yaml").write_text("train: {epoch: 3}\n")
    assert main(["evaluate", str(run)]) == 2
    _one_line_error(capsys, "config.yaml: unknown config key 'train.epoch'")
    with pytest.raises(ConfigError):
        main(["evaluate", str(run), "--debug"])
    for length, message in ((3, "no user has enough interactions for a validation target"),
                            (1, "no user has enough interactions to evaluate")):
        thin = tmp_path / f"thin{length}.csv"
        pd.DataFrame({"user_id": np.repeat(np.arange(5), length),
                      "item_id": np.arange(5 * length)}).to_csv(thin, index=False)
        out = tmp_path / f"out{length}"
        assert main(["train", "--dataset", str(thin), "--output", str(out), "--set",
                     "epochs=1"]) == 2
        _one_line_error(capsys, message)
        assert not out.exists()


# ------------------------------------------------------------------------------- 4. clean


@pytest.fixture(scope="module")
def inter_run(tmp_path_factory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("inter")
    log = write_log(folder / "log.inter")
    config = load_config(overrides=[*TINY, f"dataset={log}"])
    train_config(config, folder / "run")
    return folder / "run", log


def test_clean_reads_the_inter_file_the_model_was_trained_on(inter_run, tmp_path, capsys):
    run, log = inter_run
    out = tmp_path / "clean.inter"
    assert main(["clean", "--run", str(run), "--input", str(log), "--output", str(out),
                 "--drop-ratio", "0.1"]) == 0
    source = pd.read_csv(log, sep="\t", dtype=str)
    scored = pd.read_csv(tmp_path / "clean.scored.inter", sep="\t", dtype=str)
    cleaned = pd.read_csv(out, sep="\t", dtype=str)
    assert list(scored.columns) == [*source.columns, "noise_score:float"]
    assert scored.iloc[:, :-1].equals(source)  # every row and column, in input order
    assert list(cleaned.columns) == list(source.columns)
    assert len(cleaned) == len(source) - round(0.1 * len(source))
    top = scored.assign(score=scored["noise_score:float"].astype(float)).sort_values(
        "score", ascending=False, kind="stable")
    assert set(cleaned["note:token"]) == set(top["note:token"].iloc[round(0.1 * len(source)):])


def test_clean_takes_data_settings_and_its_errors_name_its_options(inter_run, tmp_path,
                                                                   capsys):
    run, log = inter_run
    frame = pd.read_csv(log, sep="\t", dtype=str)
    frame.columns = ["uid", "iid", "ts", "note"]
    source = tmp_path / "renamed.csv"
    frame.to_csv(source, index=False)
    args = ["clean", "--run", str(run), "--input", str(source), "--output",
            str(tmp_path / "o.csv"), "--threshold", "0.9"]
    assert main(args) == 2
    _one_line_error(capsys, "--set data.columns")
    assert main([*args, "--set", "data.max_len=5"]) == 2
    _one_line_error(capsys, "only data.columns and data.time_order apply to the input")
    assert main([*args, "--set", "data.columns={user: uid, item: iid, timestamp: ts}"]) == 0
    assert list(pd.read_csv(tmp_path / "o.csv").columns) == ["uid", "iid", "ts", "note"]
    assert main([*args[:-1], "nan", "--force"]) == 2
    _one_line_error(capsys, "--threshold must be a finite number")


@pytest.mark.parametrize("time_order", ["recbole", "exact"])
def test_clean_orders_each_user_as_training_does(time_order):
    from denoiserec.clean import _sequences

    times = np.array([2e9, 1e9 + 1, 1e9, 0.0, 5.0, 4.0])  # 1e9 and 1e9 + 1 tie in float32
    raw = RawLog(users=np.array(["a", "a", "a", "a", "b", "b"], dtype=object),
                 items=np.array(["1", "2", "3", "4", "5", "6"], dtype=object), timestamps=times)
    trained = build_interactions(raw, time_order=time_order)
    log, _ = _sequences(raw.users, np.arange(1, 7), times, trained.item_tokens, time_order)
    assert trained.item_tokens[trained.items].tolist() == [str(i) for i in log.items]


# ---------------------------------------------------- 5. locks, permissions, broken files


def test_a_live_lock_refuses_a_second_train_and_a_stale_one_is_taken_over(tmp_path):
    log = write_log(tmp_path / "a.csv")
    config = load_config(overrides=[*TINY, f"dataset={log}"])
    run = tmp_path / "run"
    run.mkdir()
    (run / ".lock").write_text(str(os.getppid()))  # a live process trains it
    with pytest.raises(ConfigError, match=rf"is being trained by process {os.getppid()}"):
        train_config(config, run)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True).stdout.strip()
    (run / ".lock").write_text(dead)
    train_config(config, run)
    assert not (run / ".lock").exists()


@pytest.mark.parametrize("umask", [0o022, 0o077])
def test_files_are_created_with_the_users_umask(tmp_path, umask):
    from denoiserec.atomic import atomic_write_text

    before = os.umask(umask)
    try:
        atomic_write_text(tmp_path / "f.txt", "x")
    finally:
        os.umask(before)
    assert (tmp_path / "f.txt").stat().st_mode & 0o777 == 0o666 & ~umask


def test_datasets_stats_reports_a_broken_file_and_goes_on(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("DENOISEREC_DATA", str(tmp_path))
    (tmp_path / "ml-100k").mkdir()
    (tmp_path / "ml-100k" / "ml-100k.inter").write_text("not an atomic file\n")
    (tmp_path / "Beauty").mkdir()
    (tmp_path / "Beauty" / "Beauty.txt").write_text("u1 1 2 3\nu2 2 3\n")
    assert main(["datasets", "--stats"]) == 1
    captured = capsys.readouterr()
    beauty = next(line for line in captured.out.splitlines() if line.startswith("| beauty"))
    assert "| 2 " in beauty and "| 5 " in beauty  # 2 users, 5 interactions
    assert "broken" in captured.out
    assert captured.err.count("\n") == 1 and "ml-100k" in captured.err


def test_readers_refuse_a_file_too_big_for_memory_and_check_widths_in_chunks(tmp_path,
                                                                           monkeypatch):
    from denoiserec.data import parsing
    from denoiserec.data.readers import read_log

    path = tmp_path / "u.data"
    path.write_text("".join(f"{u}\t{i}\t5\t{i}\n" for u in range(30) for i in range(20)))
    monkeypatch.setattr(parsing, "available_memory", lambda: 1000)
    with pytest.raises(DataError, match=r"u.data: a 0.0 GiB file; reading it needs about"):
        read_log(path)
    monkeypatch.setattr(parsing, "available_memory", lambda: None)
    monkeypatch.setattr(parsing, "_CHUNK", 64)
    assert len(read_log(path)) == 600
    with open(path, "a") as handle:
        handle.write("1\t2\t3\n")
    with pytest.raises(DataError, match=r"u.data:601: expected 4 fields"):
        read_log(path)


# ----------------------------------------------------------------------------- 6. labels


def test_training_output_names_noise_epochs_dataset_and_protocol(tmp_path, capsys):
    log, out = write_log(tmp_path / "a.csv"), tmp_path / "run"
    argv = ["train", "--dataset", str(log), "--output", str(out), "--set", "noise.ratio=0.2",
            *[arg for s in TINY for arg in ("--set", s)]]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "noise: insert 0.2 (per sequence, seed 0) on the training part" in printed
    assert "best epoch: 0 (counted from 0, of epochs 0-0)" in printed
    assert "dataset: a   protocol: recbole" in printed
    assert main([*argv, "--set", "epochs=2"]) == 0
    assert "resumed from epoch 1" in capsys.readouterr().out
