"""The command line: one-line errors with exit code 2, listings, train + evaluate end to end."""

from __future__ import annotations

import pytest

from denoiserec.cli import main


@pytest.mark.parametrize(("argv", "message"), [
    (["train", "--dataset", "no-such-dataset"], "unknown dataset 'no-such-dataset'"),
    (["train", "--model", "sasrek"], "did you mean 'sasrec'"),
    (["train", "--set", "train.epoch=2"], "did you mean 'epochs'"),
    (["evaluate", "/nonexistent/run"], "not a run directory"),
    (["train", "--set", "epoch=2"], "did you mean 'train.epochs'?"),
    (["train", "--dataset", "beuaty"], "did you mean 'beauty'?"),
    (["compare", "--models", "sasrec", "--dataset", "synthetic", "--set", "noise.ratio=0.1"],
     "use --noise"),
    (["clean", "--run", "r", "--input", "a.csv", "--output", "b.csv", "--threshold", "inf"],
     "--threshold must be a finite number"),
])
def test_errors_are_one_line_with_exit_code_2(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert message in err
    assert err.startswith("denoiserec: error:") and "\n" not in err


def test_debug_shows_the_traceback_instead(capsys):
    from denoiserec.errors import ConfigError

    with pytest.raises(ConfigError, match="did you mean 'sasrec'"):
        main(["--debug", "train", "--model", "sasrek"])
    with pytest.raises(ConfigError, match="did you mean 'sasrec'"):
        main(["train", "--model", "sasrek", "--debug"])


def test_missing_known_dataset_names_where_it_was_looked_for(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("DENOISEREC_DATA", str(tmp_path))
    assert main(["train", "--dataset", "ml-100k"]) == 2
    err = capsys.readouterr().err
    assert str(tmp_path / "ml-100k" / "ml-100k.inter") in err and "DENOISEREC_DATA" in err


def test_listings(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("DENOISEREC_DATA", str(tmp_path))
    assert main(["datasets"]) == 0
    out = capsys.readouterr().out
    assert "ml-100k" in out and "missing" in out and "synthetic" in out
    assert main(["models"]) == 0
    assert {"sasrec", "bert4rec", "gru4rec"} <= set(capsys.readouterr().out.split())


def test_train_then_evaluate_prints_protocol_and_table(tmp_path, capsys):
    run = tmp_path / "run"
    args = ["train", "--model", "gru4rec", "--protocol", "fmlp", "--output", str(run),
            "--set", "epochs=1", "--set", "model.embedding_size=8", "--set",
            "model.hidden_size=8", "--set", "train.progress=false"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "dataset: synthetic   protocol: fmlp" in out and "ndcg@10" in out
    assert "best epoch: 0 (counted from 0, of epochs 0-0)" in out
    assert main(["evaluate", str(run), "--protocol", "recbole"]) == 0
    assert "dataset: synthetic   protocol: recbole" in capsys.readouterr().out
