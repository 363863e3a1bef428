"""CTR models (DIN, DCN, Wide&Deep; ATJT spec §5) and their training under the ``ctr`` protocol.

Every model with ``task == "ctr"`` gets the shared checks (the registry-wide ones of
``test_models`` adapted to (history, candidate) scoring); then DIN's structure, the BCE loss and
its per-sample shares, the trainer's pairing of rows with their negatives, the evaluation
against a naive per-user loop, and end-to-end runs (``ctr`` protocol, ATJT on DIN).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from denoiserec.data.batches import Batch
from denoiserec.data.synthetic import SyntheticConfig, generate
from denoiserec.errors import ConfigError, TrainingError
from denoiserec.models import MODELS, build_model
from denoiserec.nn.losses import Objective
from denoiserec.run import make_trainer, prepare, train_config
from denoiserec.runconfig import load_config
from tests.batches import random_batch

CTR = sorted(name for name, cls in MODELS.items() if cls.task == "ctr")
N_ITEMS, MAX_LEN = 13, 7
LENGTHS = (1, 2, 3, 5, 6, 7, 7, 4)


def _model(name: str, seed: int = 0, **overrides):
    torch.manual_seed(seed)
    return build_model(MODELS[name].config_class(**overrides), N_ITEMS, MAX_LEN)


def _batch(lengths=LENGTHS, width: int = MAX_LEN, seed: int = 0, negatives: int = 2) -> Batch:
    return random_batch(lengths, N_ITEMS, width, seed, negatives=negatives)


def test_the_registry_has_the_three_ctr_models():
    assert CTR == ["dcn", "din", "wide_deep"]


@pytest.mark.parametrize("name", CTR)
def test_candidate_scores_shape_and_agree_with_score_all(name):
    model, batch = _model(name).eval(), _batch()
    candidates = torch.randint(0, N_ITEMS + 1, (len(batch), 5))
    with torch.no_grad():
        scores = model.score_candidates(batch, candidates)
        full = model.score_all(batch)
    assert scores.shape == (len(batch), 5) and full.shape == (len(batch), N_ITEMS + 1)
    assert torch.allclose(scores, full.gather(1, candidates), atol=1e-5)


@pytest.mark.parametrize("name", CTR)
def test_seeded_construction_and_state_round_trip(name, tmp_path: Path):
    a, b, c = _model(name, 3).eval(), _model(name, 3).eval(), _model(name, 4).eval()
    batch = _batch()
    with torch.no_grad():
        assert torch.equal(a.score_all(batch), b.score_all(batch))
        assert not torch.equal(a.score_all(batch), c.score_all(batch))
        torch.save(a.state_dict(), tmp_path / "m.pt")
        c.load_state_dict(torch.load(tmp_path / "m.pt", weights_only=True))
        assert torch.equal(a.score_all(batch), c.score_all(batch))


@pytest.mark.parametrize("name", CTR)
def test_one_backward_reaches_every_parameter(name):
    model = _model(name).train()
    output = model.loss(_batch(lengths=(MAX_LEN,) * 8), Objective(), model.progress_at(0))
    output.loss.backward()
    for pname, parameter in model.named_parameters():
        assert parameter.grad is not None and parameter.grad.abs().sum() > 0, pname
        assert torch.isfinite(parameter.grad).all(), pname


@pytest.mark.parametrize("name", CTR)
def test_extra_padding_columns_change_nothing(name):
    model = _model(name).eval()
    narrow = _batch(lengths=(1, 2, 3, 4, 4, 1, 2, 3), width=5)
    wide = dataclasses.replace(
        narrow, items=F.pad(narrow.items, (0, 2)), rows=F.pad(narrow.rows, (0, 2), value=-1))
    with torch.no_grad():
        assert torch.allclose(model.score_all(narrow), model.score_all(wide), atol=1e-5)


@pytest.mark.parametrize("name", CTR)
def test_loss_is_bce_of_the_positive_and_its_negatives(name):
    model, batch = _model(name).eval(), _batch(negatives=3)
    with torch.no_grad():
        output = model.loss(batch, Objective(), model.progress_at(0))
        terms = []
        for b in range(len(batch)):  # naive: one (history, candidate, label) row at a time
            row = Batch(items=batch.items[b:b + 1], lengths=batch.lengths[b:b + 1],
                        targets=batch.targets[b:b + 1], users=batch.users[b:b + 1],
                        rows=batch.rows[b:b + 1])
            candidates = torch.cat([batch.targets[b:b + 1], batch.negatives[b]])
            logits = model.score_candidates(row, candidates[None, :])[0]
            labels = torch.tensor([1.0, 0.0, 0.0, 0.0])
            terms.append(-(labels * F.logsigmoid(logits)
                           + (1 - labels) * F.logsigmoid(-logits)).mean())
    expected = torch.stack(terms)
    assert torch.allclose(output.per_sample, expected, atol=1e-5)  # a pair shares its weight
    assert torch.allclose(output.loss, expected.mean(), atol=1e-6)


@pytest.mark.parametrize("name", CTR)
def test_training_without_negatives_is_a_one_line_error(name):
    batch = dataclasses.replace(_batch(), negatives=None)
    with pytest.raises(TrainingError, match="use protocol=ctr"):
        model = _model(name)
        model.loss(batch, Objective(), model.progress_at(0))


# -- DIN (spec §5.3) ------------------------------------------------------------------------------
def test_din_dense_parameter_count():
    model = build_model(MODELS["din"].config_class(), 1000, 19)
    dense = sum(p.numel() for n, p in model.named_parameters()
                if not n.startswith("item_embedding") and "dice" not in n)
    assert dense == 2080 + 33 + 8448 + 16448 + 130  # spec's 29,187 less 8 user inputs x 256


@pytest.mark.parametrize("dice", ["proper", "atjt"])
def test_din_attention_equals_the_concatenated_form(dice):
    """The decomposed first layer equals Linear([e_n; e_T; e_n - e_T; e_n * e_T])."""
    model, batch = _model("din", dice=dice).eval(), _batch()
    candidates = torch.randint(1, N_ITEMS + 1, (len(batch), 3))
    history, target = model.item_embedding(batch.items), model.item_embedding(candidates)
    real = batch.items > 0
    with torch.no_grad():
        fast = model.attention_scores(history, target, real)
        h = history[:, None].expand(-1, 3, -1, -1)
        t = target[:, :, None].expand_as(h)
        z = model.attention_in(torch.cat([h, t, h - t, h * t], -1))
        cells = real[:, None, :].expand(z.shape[:3])
        hidden = torch.zeros_like(z)
        hidden[cells] = model.attention_dice(z[cells])
        slow = model.attention_out(hidden).squeeze(-1)
    assert torch.allclose(fast[cells], slow[cells], atol=1e-5)


# -- through the one trainer (ctr protocol) --------------------------------------------------------
@pytest.fixture(scope="module")
def log():
    return generate(SyntheticConfig(n_users=120, n_items=150, mean_length=15, seed=2))


def _config(*overrides: str):
    return load_config(overrides=["model=din", "protocol=ctr", "max_len=10", "batch_size=16",
                                  "train.progress=false", "epochs=2", "seed=1", *overrides])


def test_the_trainer_pairs_every_row_with_its_own_negatives(log, tmp_path):
    config = _config()
    trainer = make_trainer(config, prepare(config, log), tmp_path)
    index = torch.tensor([5, 0, 17, 3])
    batch = trainer._batch(index)
    split = trainer.split
    assert torch.equal(batch.targets, torch.as_tensor(log.items[split.train_targets[index]]))
    assert torch.equal(batch.negatives, torch.as_tensor(split.train_negatives[index]))


def test_evaluation_equals_a_naive_per_user_loop(log, tmp_path):
    config = _config("train.eval_batch_size=200")  # 3 users per chunk: chunking is exercised
    trainer = make_trainer(config, prepare(config, log), tmp_path)
    trainer.train_epoch(0)
    evaluation = trainer.evaluate("test")
    test, model, auc, hit = trainer.split.test, trainer.model.eval(), [], []
    with torch.no_grad():
        for j in range(len(test)):
            batch = trainer.batcher.prefix(torch.as_tensor(test.users[j:j + 1]),
                                           torch.as_tensor(test.targets[j:j + 1]))
            items = [int(log.items[test.targets[j]]), *test.negatives[j].tolist()]
            scores = model.score_candidates(batch, torch.tensor([items]))[0].tolist()
            below = sum((s < scores[0]) + 0.5 * (s == scores[0]) for s in scores[1:])
            auc.append(below / 63)
            hit.append(sum(s > scores[0] for s in scores[1:]) < 5)
    assert evaluation.metrics["auc"] == pytest.approx(np.mean(auc), abs=1e-6)
    assert evaluation.metrics["hit@5"] == pytest.approx(np.mean(hit), abs=1e-12)


@pytest.mark.parametrize("model", ["din", "dcn", "wide_deep", "sasrec"])
def test_training_end_to_end_under_ctr(model, log, tmp_path):
    extra = ["model.hidden_size=16", "model.n_layers=1"] if model == "sasrec" else []
    result = train_config(_config(f"model={model}", "train.valid_metric=auc",
                                  "protocol.ctr.paper_metrics=true", *extra), tmp_path / "r",
                          log=log)
    assert result.protocol == "ctr" and len(result.history) == 2
    assert {"auc", "hit@5", "ndcg@5", "hit@5_atjt", "ndcg@5_atjt"} <= set(result.test)
    assert 0.0 <= result.test["auc"] <= 1.0


def test_atjt_reweights_din(log, tmp_path):
    result = train_config(_config("train.reweight=atjt"), tmp_path / "r", log=log)
    parts = result.history[-1]["loss_parts"]
    assert {"rec_weighted", "w_mean", "detect", "w_noisy", "w_clean"} <= set(parts)
    assert 0.0 < parts["w_mean"] < 1.0


@pytest.mark.parametrize("overrides, message", [
    (["model=din", "protocol=recbole"], "CTR model"),
    (["model=sasrec", "train.valid_metric=auc"], "valid_metric=auc needs protocol=ctr"),
    (["model=din", "protocol=ctr", "train.loss=bpr"], "binary cross-entropy"),
    (["model=din", "protocol=ctr", "train.instances=window"], None),
])
def test_bad_combinations_are_one_line_errors(overrides, message, log, tmp_path):
    with pytest.raises(ConfigError, match=message):
        config = load_config(overrides=overrides)
        make_trainer(config, prepare(config, log), tmp_path)
