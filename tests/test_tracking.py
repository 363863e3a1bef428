"""Experiment tracking: what a run logs, read back by TensorBoard's and MLflow's own readers,
equals the run's own history; off, nothing is written and no number changes."""

from __future__ import annotations

import json

import pytest

from denoiserec.data.synthetic import SyntheticConfig, generate
from denoiserec.run import train_config
from denoiserec.runconfig import load_config
from denoiserec.train.tracking import mlflow_key
from tests.conftest import interrupt_after_epoch

TINY = ["model.hidden_size=16", "model.inner_size=32", "model.n_layers=1", "batch_size=64",
        "train.progress=false", "max_len=10", "train.patience=100", "epochs=3"]
# a denoiser, so that keep rates and weight entropies are among the logged loss parts
DENOISER = ["model=msdccl", "model.backbone.hidden_size=16", "model.backbone.inner_size=32",
            "model.inner_size=32", "model.n_layers=1", "batch_size=64", "max_len=10",
            "train.progress=false", "train.patience=100", "epochs=2"]


@pytest.fixture(scope="module")
def tiny_log():
    return generate(SyntheticConfig(n_users=60, n_items=50, mean_length=14, seed=1))


def expected_scalars(metrics: dict) -> dict[str, dict[int, float]]:
    """From metrics.json (written by the run itself): tag -> {epoch: value}."""
    out: dict[str, dict[int, float]] = {}
    for entry in metrics["epochs"]:
        step = entry["epoch"]
        out.setdefault("train/loss", {})[step] = entry["train_loss"]
        out.setdefault("valid/selection_value", {})[step] = entry["selection_value"]
        for name, value in entry["loss_parts"].items():
            out.setdefault(f"loss/{name}", {})[step] = value
        for name, value in entry["valid"].items():
            out.setdefault(f"valid/{name}", {})[step] = value
    return out


def test_tensorboard_reader_reads_back_every_epoch(tiny_log, tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    config = load_config(overrides=[*DENOISER, "track.tensorboard=true", "lr=0.002"])
    train_config(config, tmp_path / "run", tiny_log)
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    events = EventAccumulator(str(tmp_path / "run" / "tensorboard"), size_guidance={"scalars": 0})
    events.Reload()
    expected = expected_scalars(metrics)
    assert {"loss/kept", "loss/weight_entropy", "valid/ndcg@10"} <= set(expected)
    assert set(expected) <= set(events.Tags()["scalars"])
    for tag, values in expected.items():
        logged = {e.step: e.value for e in events.Scalars(tag)}
        assert logged == pytest.approx(values, rel=1e-6), tag  # event files hold float32
    lr = {e.step: e.value for e in events.Scalars("train/lr")}
    assert lr == pytest.approx({0: 0.002, 1: 0.002})
    test = {e.step: e.value for e in events.Scalars("test/ndcg@10")}
    assert test == pytest.approx({0: metrics["test"]["ndcg@10"]})


def test_mlflow_client_reads_back_params_metrics_and_artifacts(tiny_log, tmp_path,
                                                               monkeypatch):
    pytest.importorskip("mlflow")
    from mlflow import MlflowClient

    monkeypatch.chdir(tmp_path)  # MLflow puts a sqlite store's artifacts under ./mlruns
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    config = load_config(overrides=[*TINY, "track.mlflow=true", f"track.mlflow_uri={uri}",
                                    "track.mlflow_experiment=tests"])
    # interrupted after epoch 2, then resumed: the same MLflow run goes on
    interrupt_after_epoch(monkeypatch, 2, lambda: train_config(config, tmp_path / "run",
                                                               tiny_log))
    train_config(config, tmp_path / "run", tiny_log)
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())

    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name("tests")
    runs = client.search_runs([experiment.experiment_id])
    assert len(runs) == 1
    run = runs[0]
    assert run.info.status == "FINISHED"
    assert run.data.params["train.lr"] == "0.001" and run.data.params["model.name"] == "sasrec"
    assert run.data.tags["protocol"] == "recbole" and run.data.tags["dataset"] == "synthetic"
    for tag, values in expected_scalars(metrics).items():
        history = client.get_metric_history(run.info.run_id, mlflow_key(tag))
        assert {m.step: m.value for m in history} == pytest.approx(values), tag
    test = client.get_metric_history(run.info.run_id, "test/ndcg_at_10")
    assert [m.value for m in test] == pytest.approx([metrics["test"]["ndcg@10"]])
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"config.yaml", "metrics.json", "curve.png"} <= artifacts


def test_tracking_off_writes_nothing_and_changes_no_number(tiny_log, tmp_path):
    pytest.importorskip("tensorboard")
    off = train_config(load_config(overrides=TINY), tmp_path / "off", tiny_log)
    on = train_config(load_config(overrides=[*TINY, "track.tensorboard=true"]),
                      tmp_path / "on", tiny_log)
    assert not (tmp_path / "off" / "tensorboard").exists()
    assert not (tmp_path / "off" / "mlflow_run_id").exists()
    assert (tmp_path / "on" / "tensorboard").is_dir()
    assert on.test == off.test
    assert [e["valid"] for e in on.history] == [e["valid"] for e in off.history]


def test_turning_tracking_on_for_a_resumed_run_is_allowed(tiny_log, tmp_path, monkeypatch):
    pytest.importorskip("tensorboard")
    interrupt_after_epoch(monkeypatch, 1, lambda: train_config(
        load_config(overrides=TINY), tmp_path / "run", tiny_log))
    train_config(load_config(overrides=[*TINY, "track.tensorboard=true"]), tmp_path / "run",
                 tiny_log)
    assert (tmp_path / "run" / "tensorboard").is_dir()
