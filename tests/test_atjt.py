"""ATJT (atjt spec §8) and the per-sample loss contract it rests on.

The contract: ``ModelOutput.per_sample`` is (B,), and its mean is the model's recommendation
term, in prefix and window mode and under every objective. Then the ATJT pieces: the group
split, the artificial noise, the noise model's size, the joint gradient, reweighting through the
one trainer on every backbone, exact resume, and one-line errors for bad settings.
"""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch
import torch.nn.functional as F

from denoiserec.data.batches import Batch
from denoiserec.data.synthetic import SyntheticConfig, generate
from denoiserec.errors import ConfigError
from denoiserec.models import MODELS, build_model
from denoiserec.nn.losses import Objective
from denoiserec.run import make_trainer, prepare, train_config
from denoiserec.runconfig import load_config
from denoiserec.train.atjt import corrupt, user_groups, weighted_loss
from denoiserec.train.atjt_model import ATJTConfig, AtjtNoiseModel
from tests.batches import random_batch
from tests.conftest import interrupt_after_epoch

N_ITEMS, MAX_LEN = 13, 7
LENGTHS = (1, 2, 3, 5, 6, 7, 7, 4)
TINY = {"n_layers": 1, "n_heads": 2, "hidden_size": 16, "inner_size": 32, "embedding_size": 8}
RECOMMENDERS = ("sasrec", "gru4rec", "bert4rec", "fmlp", "msdccl", "mgsd-wss", "end4rec")


def _model(name: str, seed: int = 0):
    cls = MODELS[name].config_class
    names = {f.name for f in dataclasses.fields(cls)}
    torch.manual_seed(seed)
    config = cls(**{k: v for k, v in TINY.items() if k in names})
    return build_model(config, N_ITEMS, MAX_LEN)


def _batch(window: bool = False, negatives: int = 0, seed: int = 0) -> Batch:
    return random_batch(LENGTHS, N_ITEMS, MAX_LEN, seed, window=window, negatives=negatives)


# -- the per-sample contract -----------------------------------------------------------------
@pytest.mark.parametrize("kind", ["ce", "bpr", "sampled"])
@pytest.mark.parametrize("name", RECOMMENDERS)
@pytest.mark.parametrize("window", [False, True])
def test_per_sample_mean_is_the_recommendation_term(name, kind, window):
    model = _model(name)
    if window and not model.window_training:
        pytest.skip(f"{name} trains on prefixes only")
    if name == "mgsd-wss" and kind == "sampled":
        pytest.skip("MGSD-WSS trains with ce or bpr")
    batch = _batch(window=window and model.window_training == "next",
                   negatives=2 if kind == "bpr" else 0)
    objective = Objective(kind, n_negatives=2 if kind == "bpr" else 5)
    output = model.loss(batch, objective, model.progress_at(0))
    term = output.parts.get("rec", output.parts.get("cloze"))
    assert output.per_sample is not None and output.per_sample.shape == (len(batch),)
    mean = float(output.per_sample.detach().mean())
    assert mean == pytest.approx(term, rel=1e-5)
    if name not in ("msdccl", "mgsd-wss", "end4rec"):  # their losses have further terms
        assert mean == pytest.approx(float(output.loss.detach()), rel=1e-5)
    assert output.per_sample.requires_grad


def test_window_rows_hold_their_share_of_the_mean():
    model = _model("sasrec").eval()  # no dropout: loss and the hand computation agree
    batch = _batch(window=True)
    output = model.loss(batch, Objective("ce"), model.progress_at(0))
    hidden = model.encode(batch)
    items = model.item_embeddings()
    real = batch.targets != 0
    full = F.cross_entropy(hidden[real] @ items.T, batch.targets[real], reduction="none")
    sums = torch.stack([full[real[:b].sum():real[:b + 1].sum()].sum() for b in range(len(batch))])
    expected = sums * len(batch) / real.sum()  # row sum over the mean count per row
    torch.testing.assert_close(output.per_sample, expected, rtol=1e-4, atol=1e-5)


def test_msdccl_curriculum_leaves_the_hardest_rows_out_of_per_sample():
    model = _model("msdccl")
    # epoch 0: the curriculum's largest drop rate (0.2)
    output = model.loss(_batch(), Objective("ce"), model.progress_at(0))
    assert int((output.per_sample == 0).sum()) == len(LENGTHS) - 6  # floor(0.8 * 8) kept


# -- ATJT on the one trainer -------------------------------------------------------------------
SMALL = {"msdccl": ["model.backbone.hidden_size=16", "model.backbone.inner_size=16",
                    "model.inner_size=32", "model.n_layers=1"],
         "mgsd-wss": ["model.backbone.hidden_size=16", "model.backbone.inner_size=16",
                      "model.inner_size=32", "model.n_layers=1"]}
TRAIN = ["batch_size=32", "train.progress=false", "max_len=10", "train.patience=100",
         "train.reweight=atjt", "train.atjt.hidden_sizes=[32, 16]"]


@pytest.fixture(scope="module")
def tiny_log():
    return generate(SyntheticConfig(n_users=60, n_items=50, mean_length=14, seed=1))


def _trainer(log, tmp_path, *extra: str, model: str = "sasrec"):
    overrides = SMALL.get(model, ["model.hidden_size=16"])
    config = load_config(overrides=[f"model={model}", *overrides, *TRAIN, *extra])
    return make_trainer(config, prepare(config, log), tmp_path)


def test_groups_are_disjoint_balanced_and_seeded():
    for n_users, n_groups in ((10, 2), (11, 2), (100, 3), (7, 4)):
        groups = user_groups(n_users, n_groups, seed=3)
        sizes = torch.bincount(groups, minlength=n_groups)
        assert sizes.sum() == n_users and int(sizes.max() - sizes.min()) <= 1
        assert torch.equal(groups, user_groups(n_users, n_groups, seed=3))
    assert not torch.equal(user_groups(100, 2, 3), user_groups(100, 2, 4))


@pytest.mark.parametrize("n_groups", [2, 3])
def test_each_noise_model_weights_only_its_group_and_learns_only_from_the_others(
        tiny_log, tmp_path, n_groups):
    trainer = _trainer(tiny_log, tmp_path, f"train.atjt.groups={n_groups}")
    atjt = trainer.reweighter
    calls: dict[int, list[set[int]]] = {n: [] for n in range(n_groups)}
    for n, model in enumerate(atjt.models):
        model.register_forward_pre_hook(
            lambda _m, args, n=n: calls[n].append(set(atjt.groups[args[3]].tolist())))
    batch = trainer._batch(trainer._batches(0)[0][:32])
    progress = trainer.model.progress_at(0)
    atjt.reweight(batch, trainer.model.loss(batch, trainer.objective, progress), progress)
    for n in range(n_groups):
        weighting = [groups for groups in calls[n] if groups == {n}]
        learning = [groups for groups in calls[n] if groups != {n}]
        assert len(weighting) == 1  # the recommender rows of group n, nothing else
        assert sorted(min(g) for g in learning) == [m for m in range(n_groups) if m != n]
        assert all(len(g) == 1 and n not in g for g in learning)  # one other group per batch
    for group in range(n_groups):  # a noise batch holds one group's users only
        noise = atjt.noise_batch(group, epoch=1, step=5)
        assert set(atjt.groups[noise.users].tolist()) == {group}


def test_noise_replaces_one_item_in_a_share_of_rows_anywhere(tiny_log, tmp_path):
    trainer = _trainer(tiny_log, tmp_path)
    batch = trainer.batcher.prefix(torch.as_tensor(trainer.split.train_users[:40]),
                                   torch.as_tensor(trainer.split.train_targets[:40]))
    noise = corrupt(batch, 0.5, 1, 50, torch.Generator().manual_seed(0))
    changed = (noise.items != batch.items).sum(1)
    assert int((changed > 0).sum()) == 20 and set(changed.tolist()) == {0, 1}
    assert torch.equal(noise.labels, (changed == 0).float())  # 1 = original, 0 = replaced
    assert torch.equal(noise.items[changed == 0], batch.items[changed == 0])  # bit-identical
    new = noise.items[noise.items != batch.items]
    rows = batch.items[changed > 0]
    assert not (new[:, None] == rows).any(1).any()  # foreign to the row
    assert not (new == batch.targets[changed > 0]).any()  # never the row's target
    assert torch.equal(noise.items == 0, batch.items == 0)  # padding stays padding
    again = corrupt(batch, 0.5, 1, 50, torch.Generator().manual_seed(0))
    assert torch.equal(again.items, noise.items)  # seeded
    where = []  # every position is eligible, not only the last few (spec §3.2, §7.19)
    for seed in range(60):
        noisy = corrupt(batch, 0.5, 1, 50, torch.Generator().manual_seed(seed))
        where.append((noisy.items != batch.items).nonzero()[:, 1])
    assert set(torch.cat(where).tolist()) == set(range(batch.items.shape[1]))


def test_noise_model_size_range_and_padding():
    model = AtjtNoiseModel(ATJTConfig(), n_items=50, n_users=9).eval()
    dense = sum(p.numel() for name, p in model.named_parameters() if "embedding" not in name)
    # attention 64->32 (2,080) + 32->1 (33); output 40->256 (10,496) + 256->64 (16,448)
    # + 64->1 (65); one shared PReLU slope (1): the code's 29,123 (spec §3.1)
    assert dense == 64 * 32 + 32 + 32 + 1 + 40 * 256 + 256 + 256 * 64 + 64 + 64 + 1 + 1 == 29_123
    assert model.item_embedding.weight.shape == (51, 16)
    assert model.user_embedding.weight.shape == (9, 8)
    items = torch.tensor([[3, 4, 0, 0], [5, 6, 7, 8], [9, 0, 0, 0]])
    lengths, query, users = torch.tensor([2, 4, 1]), torch.tensor([1, 2, 3]), torch.arange(3)
    w = torch.sigmoid(model(items, lengths, query, users))
    assert w.shape == (3,) and ((w > 0) & (w < 1)).all()
    padded = items.masked_fill(items == 0, 11)  # other ids beyond the lengths: same output
    assert torch.equal(torch.sigmoid(model(padded, lengths, query, users)), w)


def test_joint_gradient_reaches_the_weights_as_derived():
    generator = torch.Generator().manual_seed(0)
    losses = torch.rand(12, generator=generator, dtype=torch.float64) * 5
    weights = torch.rand(12, generator=generator, dtype=torch.float64).requires_grad_()
    loss = weighted_loss(losses, weights.log())
    loss.backward()
    expected = (losses - loss.detach()) / weights.detach().sum()  # spec §4.2
    assert (weights.grad - expected).abs().max() < 1e-10
    scale = torch.ones(12, dtype=torch.float64, requires_grad=True)  # the recommender's side
    fresh = weights.detach().clone().requires_grad_()
    weighted_loss(losses * scale, fresh.detach().log()).backward()  # w detached (DNR)
    assert fresh.grad is None and scale.grad is not None
    vanishing = torch.full((4,), -200.0).requires_grad_()  # log w: w = 0 in float32
    vanished = weighted_loss(torch.tensor([1.0, 2.0, 3.0, 4.0]), vanishing)
    vanished.backward()
    assert torch.isfinite(vanished) and vanished.item() == pytest.approx(2.5)
    assert torch.isfinite(vanishing.grad).all()


@pytest.mark.parametrize("variant", ["atjt", "wat", "dnr"])
def test_the_recommendation_loss_alone_reaches_the_noise_model_unless_detached(
        tiny_log, tmp_path, variant):
    trainer = _trainer(tiny_log, tmp_path, "train.atjt.alpha=0", f"train.atjt.variant={variant}")
    batch = trainer._batch(trainer._batches(0)[0][:32])
    progress = trainer.model.progress_at(0)
    output = trainer.reweighter.reweight(
        batch, trainer.model.loss(batch, trainer.objective, progress), progress)
    output.loss.backward()
    grads = [p.grad for p in trainer.reweighter.models.parameters() if p.grad is not None]
    largest = max((float(g.abs().max()) for g in grads), default=0.0)
    if variant == "dnr":
        assert largest == 0.0  # w detached, alpha = 0: nothing reaches g
    else:
        assert largest > 0.0


def test_uniform_weights_leave_the_recommendation_term_unchanged(tiny_log, tmp_path):
    trainer = _trainer(tiny_log, tmp_path, "train.atjt.warmup_epochs=1")
    batch = trainer._batch(trainer._batches(0)[0][:32])
    progress = trainer.model.progress_at(0)
    plain = trainer.model.loss(batch, trainer.objective, progress)
    weighted = trainer.reweighter.reweight(batch, plain, progress)
    assert weighted.parts["rec_weighted"] == pytest.approx(plain.parts["rec"], rel=1e-6)
    assert weighted.parts["w_mean"] == 1.0
    expected = plain.loss + 100 * 2 * weighted.parts["detect"]  # alpha, N models
    assert float(weighted.loss.detach()) == pytest.approx(float(expected.detach()), rel=1e-5)


@pytest.mark.parametrize("model,mode", [("sasrec", "prefix"), ("sasrec", "window"),
                                        ("gru4rec", "prefix"), ("bert4rec", "window"),
                                        ("msdccl", "prefix"), ("mgsd-wss", "prefix"),
                                        ("fmlp", "prefix"), ("end4rec", "prefix")])
def test_reweighting_trains_every_backbone(tiny_log, tmp_path, model, mode):
    trainer = _trainer(tiny_log, tmp_path, f"train.instances={mode}", model=model)
    before_g = [p.detach().clone() for p in trainer.reweighter.models.parameters()]
    before_f = [p.detach().clone() for p in trainer.model.parameters()]
    loss, parts = trainer.train_epoch(0, max_batches=3)
    assert torch.isfinite(torch.tensor(loss))
    for key in ("rec_weighted", "w_mean", "detect", "w_noisy", "w_clean"):
        assert 0 <= parts[key] < 10, (key, parts)
    assert parts["w_mean"] > 0
    moved = [not torch.equal(a, b) for a, b in
             zip(before_g, trainer.reweighter.models.parameters(), strict=True)]
    assert sum(moved) >= len(moved) - 2  # every noise model learns (padding rows aside)
    assert any(not torch.equal(a, b) for a, b in
               zip(before_f, trainer.model.parameters(), strict=True))
    batch = trainer._batch(trainer._batches(0)[0][:8])
    scores = trainer.reweighter.noise_scores(batch)  # the noise lab's per-sequence scores
    assert scores.shape == (8,) and torch.equal(scores, trainer.reweighter.noise_scores(batch))


def test_resume_with_reweighting_is_exact(tiny_log, tmp_path, monkeypatch):
    config = load_config(overrides=["model.hidden_size=16", *TRAIN, "epochs=3"])
    straight = train_config(config, tmp_path / "straight", tiny_log)
    interrupt_after_epoch(monkeypatch, 2,
                          lambda: train_config(config, tmp_path / "resumed", tiny_log))
    resumed = train_config(config, tmp_path / "resumed", tiny_log)
    metrics = json.loads((tmp_path / "resumed" / "metrics.json").read_text())
    assert len(metrics["epochs"]) == 3
    assert [e["loss_parts"] for e in resumed.history] == [e["loss_parts"] for e in
                                                          straight.history]
    assert [e["valid"] for e in resumed.history] == [e["valid"] for e in straight.history]
    assert resumed.test == straight.test


@pytest.mark.parametrize("override,message", [
    ("train.reweight=atjtt", "train.reweight must be one of none, atjt; got 'atjtt'"),
    ("train.atjt.groups=1", "train.atjt.groups must be in [2, inf); got 1"),
    ("train.atjt.variant=both", "train.atjt.variant must be one of atjt, wat, dnr"),
    ("train.atjt.alpah=3", "unknown config key 'train.atjt.alpah'; did you mean 'alpha'?"),
    ("train.atjt.noise_share=1", "train.atjt.noise_share must be in (0, 1); got 1"),
    ("train.atjt.hidden_sizes=[]", "train.atjt.hidden_sizes must be a non-empty list"),
    ("train.atjt.lr=0", "train.atjt.lr must be in (0, inf); got 0"),
])
def test_bad_settings_fail_in_one_line(override, message):
    extra = [] if override.startswith("train.reweight") else ["train.reweight=atjt"]
    with pytest.raises(ConfigError) as caught:
        load_config(overrides=[*extra, override])
    assert message in str(caught.value) and "\n" not in str(caught.value)


def test_atjt_settings_without_atjt_and_too_many_groups_are_refused(tiny_log, tmp_path):
    with pytest.raises(ConfigError, match="^train.atjt.\\* settings need train.reweight=atjt$"):
        load_config(overrides=["train.atjt.alpha=10"])
    with pytest.raises(ConfigError, match="train.atjt.groups=70: group .* has no training"):
        _trainer(tiny_log, tmp_path, "train.atjt.groups=70")
