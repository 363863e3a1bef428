"""The training loop: resume equals an uninterrupted run, bad states fail with one line."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from denoiserec.data.synthetic import SyntheticConfig, generate
from denoiserec.errors import CheckpointError, ConfigError, TrainingError
from denoiserec.run import evaluate_run, make_trainer, prepare, train_config
from denoiserec.runconfig import load_config
from denoiserec.train.checkpoint import load_checkpoint
from denoiserec.train.evaluate import Evaluation
from tests.conftest import interrupt_after_epoch

TINY = ["model.hidden_size=16", "model.inner_size=32", "model.n_layers=1", "batch_size=64",
        "train.progress=false", "max_len=10", "train.patience=100"]


@pytest.fixture(scope="module")
def tiny_log():
    return generate(SyntheticConfig(n_users=60, n_items=50, mean_length=14, seed=1))


def tiny_config(*extra: str, epochs: int = 4):
    return load_config(overrides=[*TINY, f"epochs={epochs}", *extra])


def test_resume_after_interruption_gives_identical_results(tiny_log, tmp_path, monkeypatch):
    config = tiny_config()
    straight = train_config(config, tmp_path / "straight", tiny_log)

    interrupt_after_epoch(monkeypatch, 2,
                          lambda: train_config(config, tmp_path / "resumed", tiny_log))
    partial = json.loads((tmp_path / "resumed" / "metrics.json").read_text())
    assert 1 <= len(partial["epochs"]) <= 2 and not partial["finished"]
    resumed = train_config(config, tmp_path / "resumed", tiny_log)

    assert resumed.test == straight.test
    assert [e["valid"] for e in resumed.history] == [e["valid"] for e in straight.history]
    assert [e["train_loss"] for e in resumed.history] == [e["train_loss"] for e in straight.history]


def test_run_directory_contents_and_reevaluation(tiny_log, tmp_path):
    result = train_config(tiny_config(epochs=2), tmp_path / "run", tiny_log)
    for name in ("config.yaml", "metrics.json", "best.pt", "last.pt", "curve.png",
                 "test_ranks.csv"):
        assert (tmp_path / "run" / name).is_file(), name
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["protocol"] == "recbole" and metrics["finished"]
    assert metrics["test"] == result.test
    assert metrics["split_statistics"]["test_instances"] == tiny_log.n_users
    again = evaluate_run(tmp_path / "run", log=tiny_log)
    assert again["test"].metrics == pytest.approx(result.test)
    fmlp = evaluate_run(tmp_path / "run", protocol="fmlp", log=tiny_log)
    assert fmlp["test"].protocol == "fmlp"
    assert fmlp["test"].metrics["hit@10"] >= result.test["hit@10"]  # masking only helps


def test_reevaluating_the_last_checkpoint_gives_the_final_epochs_valid_metrics(tiny_log, tmp_path):
    result = train_config(tiny_config(epochs=3), tmp_path / "run", tiny_log)
    last = evaluate_run(tmp_path / "run", log=tiny_log, checkpoint="last")
    best = evaluate_run(tmp_path / "run", log=tiny_log)
    assert last["valid"].metrics == pytest.approx(result.history[-1]["valid"])
    assert best["valid"].metrics == pytest.approx(result.history[result.best_epoch]["valid"])
    with pytest.raises(ConfigError, match="checkpoint 'final' unknown"):
        evaluate_run(tmp_path / "run", log=tiny_log, checkpoint="final")


def test_same_seed_same_run_other_seed_other_run(tiny_log, tmp_path):
    first = train_config(tiny_config(epochs=1), tmp_path / "a", tiny_log)
    again = train_config(tiny_config(epochs=1), tmp_path / "b", tiny_log)
    other = train_config(tiny_config("seed=5", epochs=1), tmp_path / "c", tiny_log)
    assert first.test == again.test
    assert first.history[0]["train_loss"] != other.history[0]["train_loss"]


def test_run_dir_of_another_config_is_refused(tiny_log, tmp_path):
    train_config(tiny_config(epochs=1), tmp_path / "run", tiny_log)
    with pytest.raises(ConfigError, match="another configuration"):
        train_config(tiny_config("lr=0.01", epochs=1), tmp_path / "run", tiny_log)
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    with pytest.raises(ConfigError, match="not a denoiserec run directory"):
        train_config(tiny_config(epochs=1), tmp_path / "other", tiny_log)
    assert (tmp_path / "other" / "notes.txt").read_text() == "mine"


def test_checkpoint_of_another_model_is_refused(tiny_log, tmp_path):
    train_config(tiny_config(epochs=1), tmp_path / "run", tiny_log)
    with pytest.raises(CheckpointError, match="checkpoint model is 'sasrec', expected 'gru4rec'"):
        load_checkpoint(tmp_path / "run" / "best.pt", expect={"model": "gru4rec"})
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="not a readable denoiserec checkpoint"):
        load_checkpoint(tmp_path / "junk.pt")


def test_nan_loss_stops_with_a_clear_error(tiny_log, tmp_path, monkeypatch):
    from denoiserec.models.sasrec import SASRec

    monkeypatch.setattr(SASRec, "item_embeddings",
                        lambda self: self.item_embedding.weight * torch.tensor(float("nan")))
    with pytest.raises(TrainingError, match="loss became nan at epoch 0, batch 0"):
        train_config(tiny_config(epochs=1), tmp_path / "run", tiny_log)


def test_nan_gradient_with_a_finite_loss_stops_with_a_clear_error(tiny_log, tmp_path,
                                                                  monkeypatch):
    from denoiserec.models.sasrec import SASRec

    def nan_gradient(self):  # forward W, backward 1 + 0 * d sqrt(x) / dx at x = 0 = NaN
        weight = self.item_embedding.weight
        return weight + (weight * 0).sqrt()

    monkeypatch.setattr(SASRec, "item_embeddings", nan_gradient)
    with pytest.raises(TrainingError, match="gradient became nan at epoch 0, batch 0"):
        train_config(tiny_config(epochs=1), tmp_path / "run", tiny_log)
    assert not (tmp_path / "run" / "last.pt").exists()


@pytest.mark.parametrize("model", ["gru4rec", "bert4rec"])
def test_other_models_train_and_improve_over_chance(tiny_log, tmp_path, model):
    config = load_config(overrides=[f"model={model}", "model.hidden_size=16" if model ==
                                    "bert4rec" else "model.embedding_size=16", "epochs=3",
                                    "batch_size=64", "train.progress=false", "max_len=10"])
    result = train_config(config, tmp_path / model, tiny_log)
    assert result.test["hit@10"] > 10 / tiny_log.n_items  # better than random ranking


def test_window_mode_and_bpr(tiny_log, tmp_path):
    window = train_config(tiny_config("train.instances=window", epochs=2), tmp_path / "w",
                          tiny_log)
    bpr = train_config(tiny_config("train.loss=bpr", "train.n_negatives=2", epochs=2),
                       tmp_path / "b", tiny_log)
    assert window.history and bpr.history
    with pytest.raises(ConfigError, match="bidirectional"):
        train_config(load_config(overrides=["model=msdccl", "train.instances=window",
                                            "epochs=1"]), tmp_path / "x", tiny_log)


def test_evaluate_under_another_protocol_keeps_the_other_protocol_settings(tiny_log, tmp_path,
                                                                          monkeypatch):
    from denoiserec import run as run_module

    train_config(tiny_config("protocol.ties=topk", epochs=1), tmp_path / "r", tiny_log)
    seen = []
    original = run_module.restore
    monkeypatch.setattr(run_module, "restore",
                        lambda run_dir, config, *a, **k: seen.append(config)
                        or original(run_dir, config, *a, **k))
    evaluate_run(tmp_path / "r", protocol="fmlp", log=tiny_log)
    assert seen[0].protocol.name == "fmlp" and seen[0].protocol.ties == "topk"


# -- settings that must reach the optimiser and the selection rule ---------------------------
def test_weight_decay_reaches_the_optimiser(tiny_log, tmp_path):
    """Adam's first step, by hand: with g' = g + wd * p (L2 on the gradient, as
    ``torch.optim.Adam``), m_hat = g' and v_hat = g'^2, so p1 = p0 - lr * g' / (|g'| + eps)."""
    lr, wd = 0.01, 0.5
    config = tiny_config(f"lr={lr}", f"train.weight_decay={wd}", epochs=1)
    trainer = make_trainer(config, prepare(config, tiny_log), tmp_path)
    before = {name: p.detach().clone() for name, p in trainer.model.named_parameters()}
    trainer.train_epoch(0, max_batches=1)
    for name, p in trainer.model.named_parameters():
        assert p.grad is not None, name
        g = p.grad + wd * before[name]  # p.grad: the loss's gradient (Adam adds wd to a copy)
        expected = before[name] - lr * g / (g.abs() + 1e-8)
        torch.testing.assert_close(p.detach(), expected, rtol=1e-5, atol=1e-6, msg=name)


@pytest.mark.parametrize(("values", "best"), [
    ((0.10001, 0.10004, 0.09), 1),  # equal at 4 decimals: the later epoch wins (RecBole)
    ((0.10004, 0.10001, 0.09), 1),  # lower raw value, equal rounded: still the later
    ((0.10004, 0.10016, 0.10024), 2),  # 0.1002 twice: the later
    ((0.2, 0.1, 0.19996), 2),  # 0.2000 again after a dip: the later epoch
])
def test_early_stopping_keeps_the_later_epoch_of_a_rounded_tie(tiny_log, tmp_path, values,
                                                               best):
    config = tiny_config(f"epochs={len(values)}")
    trainer = make_trainer(config, prepare(config, tiny_log), tmp_path)
    scripted = iter(values)
    trainer.train_epoch = lambda epoch: (0.0, {})  # noqa: ARG005 -- only selection is tested
    trainer.evaluate = lambda which: Evaluation(
        metrics={"ndcg@10": next(scripted)}, ranks=np.zeros(0), users=np.zeros(0),
        protocol="recbole")
    trainer.fit()
    assert trainer.state.best_epoch == best
    assert trainer.state.best_value == round(max(values), 4)


def test_the_model_is_told_where_training_is(tiny_log, tmp_path):
    """The progress passed to ``loss`` counts full epochs, also when a run trains only the first
    ``max_batches`` of each (the old epoch-length guess then numbered the steps wrongly)."""
    config = tiny_config(epochs=2)
    trainer = make_trainer(config, prepare(config, tiny_log), tmp_path)
    seen, loss = [], trainer.model.loss
    trainer.model.loss = lambda batch, objective, progress: (seen.append(progress),
                                                             loss(batch, objective, progress))[1]
    full = len(trainer._batches(1))
    assert full > 2
    trainer.train_epoch(1, max_batches=2)
    assert [(p.epoch, p.batch, p.steps_per_epoch, p.step) for p in seen] == [
        (1, 0, full, full), (1, 1, full, full + 1)]
