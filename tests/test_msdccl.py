"""MSDCCL: each block against an independent reference (spec §8) and the fixes it promises.

The shared checks of every registered model (shapes, determinism, gradients, round trip) are in
``tests/test_models.py``; here: the hard gate, compaction, contrastive loss, curriculum and
temperature schedules, soft weights, label leakage, window alignment, backbones and ablations.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import pytest
import torch

from denoiserec.data.batches import Batch
from denoiserec.models import build_model, model_config_class
from denoiserec.models.msdccl import MSDCCL, MSDCCLConfig
from denoiserec.nn.contrastive import cross_signal_contrastive
from denoiserec.nn.gumbel import (
    centred_gate_logits,
    compact_kept,
    keep_most_recent_if_empty,
    straight_through_gumbel,
)
from denoiserec.nn.losses import Objective
from denoiserec.nn.schedules import (
    TrainingProgress,
    anneal_temperature,
    curriculum_drop_rate,
    easiest_mean,
    kept_count,
)
from denoiserec.nn.short_term import last_items_window
from denoiserec.runconfig import load_config
from tests.batches import random_batch

N_ITEMS, MAX_LEN = 20, 10
LENGTHS = (1, 2, 3, 6, 10, 10)
CONFIGS = Path(__file__).resolve().parents[1] / "configs"
LIVENESS = {"kept", "weight_entropy", "saturated"}  # logged by every denoiser
NO_DROPOUT = {"backbone_dropout": 0.0, "att_dropout": 0.0, "ae_dropout": 0.0}


def _backbone(name: str, dropout: float | None) -> object:
    """A width-16 backbone config (the reference's inner = H for Transformers)."""
    if name == "gru4rec":
        drop = {} if dropout is None else {"dropout": dropout}
        return model_config_class(name)(embedding_size=16, hidden_size=16, **drop)
    drop = {} if dropout is None else {"hidden_dropout": dropout, "attn_dropout": dropout}
    return model_config_class(name)(hidden_size=16, inner_size=16, **drop)


def _model(seed: int = 0, backbone: str = "bert4rec", backbone_dropout: float | None = None,
           **overrides) -> MSDCCL:
    torch.manual_seed(seed)
    config = MSDCCLConfig(backbone=_backbone(backbone, backbone_dropout), inner_size=32,
                          **overrides)
    return build_model(config, N_ITEMS, MAX_LEN)


def _batch(lengths=LENGTHS, seed: int = 0, targets: torch.Tensor | None = None) -> Batch:
    return random_batch(lengths, N_ITEMS, MAX_LEN, seed, targets=targets)


# ----------------------------------------------------------------------------- hard gate


def test_straight_through_gumbel_is_exactly_one_hot_with_soft_gradient() -> None:
    torch.manual_seed(0)
    log_probs = torch.randn(64, 7, 2).log_softmax(-1).requires_grad_()
    choice = straight_through_gumbel(log_probs, tau=0.3)
    assert set(choice.detach().unique().tolist()) <= {0.0, 1.0}
    assert torch.equal(choice.detach().sum(-1), torch.ones(64, 7))
    (choice[..., 0] * torch.randn(64, 7)).sum().backward()
    assert log_probs.grad.abs().sum() > 0
    # without sampling: the argmax, whatever the temperature
    greedy = straight_through_gumbel(log_probs.detach(), tau=5.0, sample=False)
    assert torch.equal(greedy.argmax(-1), log_probs.detach().argmax(-1))


def test_gate_on_log_probabilities_follows_the_scorer() -> None:
    """The reference's gate on probabilities is a near coin flip (spec §7.3); ours is not."""
    torch.manual_seed(0)
    clean = torch.full((20000, 2), 0.95)
    clean[:, 1] = 0.05
    ours = straight_through_gumbel(clean.log(), 0.5)[:, 0].mean()
    reference = straight_through_gumbel(clean, 0.5)[:, 0].mean()  # probabilities as logits
    assert abs(float(ours) - 0.95) < 0.01
    assert abs(float(reference) - 1 / (1 + math.exp(-0.9))) < 0.01  # sigmoid(0.95 - 0.05)


def test_fallback_keeps_the_most_recent_item() -> None:
    keep = torch.tensor([[0.0, 0, 0, 0], [0, 1, 0, 0], [0, 0, 0, 0]])
    lengths = torch.tensor([3, 2, 1])
    expected = torch.tensor([[0.0, 0, 1, 0], [0, 1, 0, 0], [1, 0, 0, 0]])
    assert torch.equal(keep_most_recent_if_empty(keep, lengths), expected)


@pytest.mark.parametrize("seed", range(4))
def test_hard_masks_are_binary_partitions_with_fallback(seed: int) -> None:
    model, batch = _model(seed).train(), _batch(seed=seed)
    mask = (batch.items > 0).float()
    keep = model.hard_keep(batch)
    noise = mask - keep.detach()
    for values in (keep.detach(), noise):
        assert set(values.unique().tolist()) <= {0.0, 1.0}
    assert torch.equal(keep.detach() + noise, mask)
    assert (keep.detach().sum(1) >= 1).all()
    # a scorer that calls everything noise (reference gate): each row keeps its most recent
    everything_noise = torch.tensor([-30.0, 0.0]).expand(len(batch), MAX_LEN, 2)
    keep = _model(seed, gate="reference").hard_keep(batch, everything_noise, sample=False)
    noise = mask - keep.detach()
    last = torch.zeros_like(mask)
    last[torch.arange(len(batch)), batch.lengths - 1] = 1.0
    assert torch.equal(keep.detach(), last) and torch.equal(noise, mask - last)


def test_centred_gate_keeps_items_above_the_row_mean() -> None:
    model, batch = _model(gate="centred", gate_bias=0.0).eval(), _batch()
    mask = (batch.items > 0).float()
    with torch.no_grad():
        log_probs = model.soft_denoise(batch).log_probs
        keep = model.hard_keep(batch)
    noise = mask - keep
    margin = log_probs[..., 0] - log_probs[..., 1]
    for b in range(len(batch)):
        n = int(batch.lengths[b])
        mean = sum(float(margin[b, i]) for i in range(n)) / n
        expected = [float(margin[b, i]) > mean for i in range(n)]
        if any(expected):  # otherwise the most-recent fallback
            assert keep[b, :n].bool().tolist() == expected
    assert torch.equal(keep + noise, mask)
    shifted = centred_gate_logits(log_probs, mask, bias=100.0)
    assert (shifted[..., 0] > 0)[mask.bool()].all()  # a large bias keeps everything


@pytest.mark.parametrize("through_gate", [True, False])
def test_contrastive_gate_gradient_switch(through_gate: bool,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    import denoiserec.models.msdccl as module

    seen = []

    def spy(anchor, candidates, keep, mask, tau):
        seen.append(keep.requires_grad)
        return cross_signal_contrastive(anchor, candidates, keep, mask, tau)

    monkeypatch.setattr(module, "cross_signal_contrastive", spy)
    model = _model(contrastive_gate_gradient=through_gate).train()
    model.loss(_batch(), Objective(), model.progress_at(0))
    assert seen == [through_gate]


def _scorer_grads(model: MSDCCL, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
    """Gradients on W_a from the contrastive and the BPR loss, each only through keep."""
    torch.manual_seed(1)
    soft = model.soft_denoise(batch)
    representation = model.backbone(soft.embeddings, batch.items, batch.lengths - 1).detach()
    keep = model.hard_keep(batch, soft.log_probs, sample=True)
    assert ((keep.detach().sum(1) < batch.lengths) & (keep.detach().sum(1) > 0)).any()
    items = model.item_embeddings().detach()
    contrastive = cross_signal_contrastive(representation, items[batch.items], keep,
                                           batch.items > 0, 0.5).mean()
    hard = model.hard_representation(batch.items, keep)
    bpr = -torch.nn.functional.logsigmoid(
        (hard * (items[batch.targets] - items[(batch.targets % N_ITEMS) + 1])).sum(-1)).mean()
    weight = model.readout.score.weight
    return (torch.autograd.grad(contrastive, weight, retain_graph=True)[0],
            torch.autograd.grad(bpr, weight, allow_unused=True)[0])


def test_contrastive_and_bpr_gradients_reach_the_scorer_through_the_gate() -> None:
    model, batch = _model().train(), _batch(lengths=(10,) * 6)
    from_contrastive, from_bpr = _scorer_grads(model, batch)
    assert from_contrastive.abs().sum() > 0
    assert from_bpr is not None and from_bpr.abs().sum() > 0
    # the reference's id-only hard branch: no BPR gradient on the scorer (spec §8)
    model = _model(hard_keep_gradient=False).train()
    from_contrastive, from_bpr = _scorer_grads(model, batch)
    assert from_contrastive.abs().sum() > 0
    assert from_bpr is None or from_bpr.abs().sum() == 0


# ----------------------------------------------------------------------------- compaction


def test_compaction_equals_a_naive_loop() -> None:
    g = torch.Generator().manual_seed(0)
    for _ in range(20):
        lengths = torch.randint(1, MAX_LEN + 1, (8,), generator=g)
        real = torch.arange(MAX_LEN)[None, :] < lengths[:, None]
        items = torch.where(real, torch.randint(1, N_ITEMS + 1, (8, MAX_LEN), generator=g), 0)
        keep = (torch.rand(8, MAX_LEN, generator=g) < 0.6).float() * real
        compacted, new_lengths, _ = compact_kept(items, keep)
        for b in range(8):
            kept = [int(i) for i, k in zip(items[b], keep[b], strict=True) if k == 1]
            assert compacted[b].tolist() == kept + [0] * (MAX_LEN - len(kept))
            assert int(new_lengths[b]) == len(kept)


# ----------------------------------------------------------------------------- contrastive


def _contrastive_toy(cos: list[float], keep: list[float], tau: float) -> torch.Tensor:
    """Candidates (cos c, sin c) against the anchor (1, 0): cosine similarities ``cos``."""
    angles = torch.tensor(cos).acos()
    candidates = torch.stack([angles.cos(), angles.sin()], -1)[None]  # (1, L, 2)
    return cross_signal_contrastive(torch.tensor([[1.0, 0.0]]), candidates,
                                    torch.tensor([keep]), torch.ones(1, len(cos)), tau)


def test_contrastive_toy_value_of_the_spec() -> None:
    loss = _contrastive_toy([0.5, 0.2, -0.1], [1.0, 0.0, 1.0], 0.5)
    assert abs(float(loss) - 0.73749) < 5e-5


def test_contrastive_against_hand_computation() -> None:
    torch.manual_seed(0)
    anchor, candidates = torch.randn(3, 5), torch.randn(3, 6, 5)
    keep = torch.tensor([[1.0, 0, 1, 1, 0, 0], [0, 1, 0, 0, 0, 0], [1, 1, 1, 0, 0, 0]])
    mask = torch.tensor([[1.0] * 6, [1.0] * 4 + [0.0] * 2, [1.0] * 3 + [0.0] * 3])
    tau = 0.3
    loss = cross_signal_contrastive(anchor, candidates, keep, mask, tau)
    for b in range(3):
        x = [math.exp(float(torch.nn.functional.cosine_similarity(candidates[b, i], anchor[b],
                                                                  dim=0)) / tau)
             for i in range(6)]
        positives = [i for i in range(6) if keep[b, i] == 1 and mask[b, i] == 1]
        negatives = [j for j in range(6) if keep[b, j] == 0 and mask[b, j] == 1]
        expected = -sum(math.log(x[i] / (x[i] + sum(x[j] for j in negatives)))
                        for i in positives) / len(positives)
        assert abs(float(loss[b]) - expected) < 1e-5
    assert float(loss[2]) == 0.0  # every real item kept


def test_contrastive_is_zero_when_everything_is_kept() -> None:
    assert float(_contrastive_toy([0.5, 0.2, -0.1], [1.0, 1.0, 1.0], 0.1)) == 0.0


# ----------------------------------------------------------------------------- schedules


def test_s_shaped_curriculum_matches_the_reference_table() -> None:
    expected = [0.19866, 0.19598, 0.18830, 0.16822, 0.12708, 0.07292, 0.03178, 0.01170,
                0.00402, 0.00134, 0.0, 0.0]
    rates = [curriculum_drop_rate(e) for e in range(12)]
    assert rates == pytest.approx(expected, abs=1e-12)
    assert [kept_count(256, d) for d in rates[:11]] == [205, 205, 207, 212, 223, 237, 247, 253,
                                                        254, 255, 256]
    assert curriculum_drop_rate(0, "linear") == pytest.approx(0.2)
    assert curriculum_drop_rate(5, "linear") == pytest.approx(0.1)
    assert curriculum_drop_rate(0, "none") == 0.0


def test_curriculum_keeps_the_smallest_losses() -> None:
    losses = torch.randn(256, generator=torch.Generator().manual_seed(0)).exp()
    for epoch in range(11):
        rate = curriculum_drop_rate(epoch)
        k = kept_count(256, rate)
        assert torch.allclose(easiest_mean(losses, rate), losses.sort().values[:k].mean())


def test_temperature_schedules() -> None:
    reference = [anneal_temperature(0.5, 0.1, k - 1, None, "reference") for k in (40, 80, 200)]
    assert reference == pytest.approx([0.48039, 0.44346, 0.27441], abs=5e-6)
    assert anneal_temperature(0.5, 0.1, 358, None, "reference") > 0.1  # floor at batch 360
    assert anneal_temperature(0.5, 0.1, 359, None, "reference") == 0.1
    assert anneal_temperature(0.5, 1e-3, 718, None, "reference") > 1e-3  # and at 720
    assert anneal_temperature(0.5, 1e-3, 719, None, "reference") == 1e-3
    assert anneal_temperature(0.5, 0.1, 0, 1000) == 0.5
    assert anneal_temperature(0.5, 0.1, 500, 1000) == pytest.approx(math.sqrt(0.05))
    assert anneal_temperature(0.5, 0.1, 1000, 1000) == pytest.approx(0.1)
    assert anneal_temperature(0.5, 0.1, 5000, 1000) == 0.1


def test_temperatures_follow_the_training_progress() -> None:
    schedule = _model(anneal_epochs=2.0).temperatures
    for step in range(4):  # 4 batches per epoch: epoch 0 holds the start values
        assert schedule.at(TrainingProgress(0, step, 4)).gumbel == 0.5
    assert schedule.at(TrainingProgress(2, 3, 4)).gumbel == pytest.approx(0.1)  # >= 2 epochs
    assert schedule.at(TrainingProgress(1, 2, 4)).contrastive == pytest.approx(
        0.5 * 0.2 ** (6 / 8))
    assert schedule.at(TrainingProgress(1, 0, 4)).gumbel == pytest.approx(0.5 * 0.2 ** (4 / 8))


# ----------------------------------------------------------------------------- soft branch


def test_soft_weights_are_normalised_once() -> None:
    model, batch = _model().eval(), _batch()
    with torch.no_grad():
        soft = model.soft_denoise(batch)
        log_probs, weights = soft.log_probs, soft.weights
    real = batch.items > 0
    assert (weights[~real] == 0).all()
    assert torch.allclose(weights.sum(1), batch.lengths.float(), atol=1e-5)  # mean 1
    assert weights[real].median() > 5.0 / MAX_LEN  # not the reference's ~1/L
    assert weights[real].std() > 0.05  # the scorer's preferences survive the normalisation
    with torch.no_grad():
        raw = _model(soft_weight_norm="none").eval().soft_denoise(batch)
    assert torch.allclose(raw.weights, log_probs[..., 0].exp() * real)


def test_soft_weights_stay_finite_when_every_clean_probability_underflows(monkeypatch) -> None:
    """A gate pushed to drop everything (log pi ~ -200: pi = 0 in float32) must still give
    the normalised weights pi_i / sum_j pi_j * n and finite gradients (was 0 * inf = NaN)."""
    model, batch = _model().eval(), _batch()
    real = batch.items > 0
    log_clean = (-200.0 + torch.randn(batch.items.shape, generator=torch.Generator().manual_seed(1))
                 ).requires_grad_()
    log_probs = torch.stack([log_clean, torch.zeros_like(log_clean)], -1)
    values = torch.ones(*batch.items.shape, 16)
    monkeypatch.setattr(model.readout, "forward", lambda *_: (log_probs, values))
    weights = model.soft_denoise(batch).weights
    reference = torch.where(real, log_clean.detach().double(), -torch.inf).softmax(1)
    assert torch.allclose(weights.double(), reference * batch.lengths[:, None], atol=1e-5)
    weights[real].pow(2).sum().backward()
    assert torch.isfinite(log_clean.grad).all() and log_clean.grad[real].abs().sum() > 0


@pytest.mark.parametrize("train", [True, False])
def test_no_target_leaks_into_the_scored_representation(train: bool) -> None:
    model = _model(**NO_DROPOUT).train(train)
    first, second = _batch(), _batch()
    second = dataclasses.replace(second, targets=second.targets % N_ITEMS + 1)
    with torch.no_grad():
        assert torch.equal(model.sequence_representation(first),
                           model.sequence_representation(second))
        assert torch.equal(model.score_all(first), model.score_all(second))
        assert torch.equal(model.soft_denoise(first).weights,
                           model.soft_denoise(second).weights)


def test_short_term_window_is_the_same_in_training_and_evaluation() -> None:
    batch = _batch()
    m = 3
    window = last_items_window(batch.items, batch.lengths, m)
    for b in range(len(batch)):
        recent = batch.items[b, : int(batch.lengths[b])].tolist()[-m:]
        assert window[b].tolist() == [0] * (m - len(recent)) + recent  # right-aligned
    model = _model(sequence_last_m=m, **NO_DROPOUT)
    with torch.no_grad():
        trained = model.train().short_term_interest(batch.items, batch.lengths)
        trained_repr = model.sequence_representation(batch)
        evaluated = model.eval().short_term_interest(batch.items, batch.lengths)
        evaluated_repr = model.sequence_representation(batch)
    assert torch.equal(trained, evaluated)
    assert torch.allclose(trained_repr, evaluated_repr, atol=1e-6)


def test_evaluation_is_deterministic() -> None:
    model, batch = _model().eval(), _batch()
    with torch.no_grad():
        assert torch.equal(model.score_all(batch), model.score_all(batch))
        assert torch.equal(model.hard_keep(batch), model.hard_keep(batch))
        assert torch.equal(model.noise_scores(batch), model.noise_scores(batch))


def test_noise_scores_and_hard_keep() -> None:
    model, batch = _model(gate="reference").eval(), _batch()
    with torch.no_grad():
        scores, keep = model.noise_scores(batch), model.hard_keep(batch)
        log_probs = model.soft_denoise(batch).log_probs
    real = batch.items > 0
    assert scores.shape == batch.items.shape and (scores >= 0).all() and (scores <= 1).all()
    assert (scores[~real] == 0).all() and (keep[~real] == 0).all()
    argmax_keep = (log_probs[..., 0] >= log_probs[..., 1]) & real
    rows = argmax_keep.any(1)  # rows without the fallback: the argmax exactly
    assert torch.equal(keep[rows].bool(), argmax_keep[rows])


# ----------------------------------------------------------------------------- variants


@pytest.mark.parametrize("backbone", ["bert4rec", "sasrec", "gru4rec"])
def test_backbones_train_every_parameter(backbone: str) -> None:
    model = _model(backbone=backbone).train()
    batch = _batch(lengths=(MAX_LEN,) * 6)
    with torch.no_grad():
        assert model.eval().score_all(batch).shape == (6, N_ITEMS + 1)
        assert model.encode(batch).shape == (6, MAX_LEN, 16)
    output = model.train().loss(batch, Objective(), model.progress_at(0))
    assert torch.isfinite(output.loss)
    assert set(output.parts) == {"rec", "bpr", "cl", *LIVENESS}
    output.loss.backward()
    for name, parameter in model.named_parameters():
        assert parameter.grad is not None and parameter.grad.abs().sum() > 0, name


def test_sasrec_backbone_is_causal_and_bert4rec_is_not() -> None:
    batch = _batch(lengths=(MAX_LEN,) * 6)
    items = batch.items.clone()
    items[:, 7] = items[:, 7] % N_ITEMS + 1
    changed = dataclasses.replace(batch, items=items)
    for backbone, causal in (("sasrec", True), ("bert4rec", False)):
        model = _model(backbone=backbone).eval()
        with torch.no_grad():
            denoised = model.soft_denoise(batch).embeddings
            before = model.backbone(denoised, batch.items)
            after = model.backbone(denoised, changed.items)  # same inputs, another key mask
            denoised_changed = denoised.clone()
            denoised_changed[:, 7] += torch.randn(16)  # LN ignores a constant
            moved = model.backbone(denoised_changed, batch.items)
        assert torch.equal(before, after)  # only padding matters for the mask
        assert torch.allclose(before[:, :7], moved[:, :7], atol=1e-6) == causal


@pytest.mark.parametrize(("switches", "parts"), [
    ({"use_hard_branch": False}, {"rec", "cl", *LIVENESS}),
    ({"use_contrastive": False}, {"rec", "bpr", *LIVENESS}),
    ({"use_hard_branch": False, "use_contrastive": False}, {"rec", *LIVENESS}),
])
def test_ablation_switches_remove_their_losses(switches: dict, parts: set) -> None:
    model = _model(**switches).train()
    assert (model.hard_encoder is None) == (not model.config.use_hard_branch)
    output = model.loss(_batch(), Objective(), model.progress_at(0))
    assert set(output.parts) == parts
    output.loss.backward()
    for name, parameter in model.named_parameters():
        assert parameter.grad is not None, name


def test_loss_is_rec_plus_lambda_times_auxiliary_terms() -> None:
    batch = _batch()
    parts = {}
    for weight in (0.0, 2.0):
        model = _model(loss_lambda=weight, **NO_DROPOUT).train()
        torch.manual_seed(5)  # same negatives and Gumbel noise
        output = model.loss(batch, Objective(), model.progress_at(0))
        parts[weight] = output
    for weight, output in parts.items():
        expected = output.parts["rec"] + weight * (output.parts["bpr"] + output.parts["cl"])
        assert float(output.loss.detach()) == pytest.approx(expected, rel=1e-5)


def test_window_instances_are_refused() -> None:
    batch = _batch()
    window = dataclasses.replace(batch, targets=batch.items, instances="window")
    model = _model()
    with pytest.raises(ValueError, match="prefix"):
        model.loss(window, Objective(), model.progress_at(0))


@pytest.mark.parametrize("name", ["ml-100k", "beauty", "ml-1m", "ml-100k-h64", "beauty-h64"])
def test_configs_resolve(name: str) -> None:
    config = load_config(CONFIGS / f"msdccl-{name}.yaml")
    assert isinstance(config.model, MSDCCLConfig)
    assert config.train.valid_metric == "hit@20" and config.train.clip_grad_norm == 5
    assert config.train.warmup_steps > 0
    assert config.data.max_len == (200 if name == "ml-1m" else 50)


@pytest.mark.parametrize("through_table", [False, True])
def test_the_contrastive_loss_moves_the_item_table_only_when_asked(through_table, monkeypatch):
    """With a scorer-following gate the same items are L_cl's negatives in nearly every
    history; moving their (scoring) embeddings away from every user made them unrecommendable."""
    from denoiserec.models import msdccl as module

    seen = {}

    def spy(anchor, candidates, *args):
        seen["grad"] = candidates.requires_grad
        return cross_signal_contrastive(anchor, candidates, *args)

    monkeypatch.setattr(module, "cross_signal_contrastive", spy)
    model = _model(contrastive_item_gradient=through_table).train()
    model.loss(_batch(), Objective(), model.progress_at(0))
    assert seen["grad"] is through_table
