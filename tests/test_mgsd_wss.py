"""MGSD-WSS: each block against an independent reference (mgsd-wss spec §8) and its fixes.

The shared checks of every registered model are in ``tests/test_models.py`` and the denoiser
contract (liveness, own-score AUC, no leakage, padding) in ``tests/test_denoiser_contract.py``;
here: kernels, contrastive toy values, shapes and masks, straight-through gradients, the weak
supervision's labels, determinism, ablations and configs.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from denoiserec.data.batches import Batch
from denoiserec.models import build_model, model_config_class
from denoiserec.models.mgsd_wss import MGSDWSS, MGSDWSSConfig
from denoiserec.nn.contrastive import noise_weighted_contrastive
from denoiserec.nn.kernels import kernel_means, kernel_responses, kernel_widths
from denoiserec.nn.losses import Objective
from denoiserec.nn.transformer import attention_mask
from denoiserec.noise.online import CorruptedRows, insert_items
from denoiserec.runconfig import load_config
from tests.batches import random_batch

N_ITEMS, MAX_LEN, H, K = 30, 10, 16, 5
LENGTHS = (1, 2, 3, 6, 10, 10)
CONFIGS = Path(__file__).resolve().parents[1] / "configs"
NO_DROPOUT = {"dropout": 0.0}


def _model(seed: int = 0, backbone: str = "bert4rec", **overrides) -> MGSDWSS:
    torch.manual_seed(seed)
    if backbone == "gru4rec":
        sub = model_config_class(backbone)(embedding_size=H, hidden_size=H, dropout=0.0)
    else:
        sub = model_config_class(backbone)(hidden_size=H, inner_size=H, hidden_dropout=0.0,
                                           attn_dropout=0.0)
    config = MGSDWSSConfig(backbone=sub, inner_size=32, n_interests=K, **overrides)
    return build_model(config, N_ITEMS, MAX_LEN)


def _batch(lengths=LENGTHS, seed: int = 0) -> Batch:
    return random_batch(lengths, N_ITEMS, MAX_LEN, seed)


# ----------------------------------------------------------------------------- kernels


def test_kernel_means_and_widths_of_the_spec() -> None:
    expected = [1.0, 0.8889, 0.6667, 0.4444, 0.2222, 0.0, -0.2222, -0.4444, -0.6667, -0.8889]
    assert kernel_means(10).tolist() == pytest.approx(expected, abs=1e-4)
    assert kernel_widths(10).tolist() == pytest.approx([0.001] + [0.1] * 9)


def test_summed_kernel_gain_matches_the_spec() -> None:
    """Spec §8: the published scalar gain sum_j phi_j is 1.1695 at r = 0 and 1.5433 at r = 1
    (our perceptron keeps the 10 responses instead of summing them)."""
    responses = kernel_responses(torch.tensor([0.0, 1.0]), kernel_means(10), kernel_widths(10))
    assert responses.shape == (2, 10)
    assert responses.sum(-1).tolist() == pytest.approx([1.1695, 1.5433], abs=1e-4)
    assert float(responses[1, 0]) == 1.0  # the exact-match kernel fires only at r = 1


def test_perceptron_keeps_a_kernel_vector_per_item() -> None:
    """Two items with the same summed gain but different similarities get different inputs
    (the published sum could not tell them apart)."""
    model = _model(**NO_DROPOUT).eval()
    means, widths = model.perceptron.means, model.perceptron.widths
    a, b = kernel_responses(torch.tensor([0.1, -0.1]), means, widths)
    assert float(a.sum()) == pytest.approx(float(b.sum()), abs=1e-6)
    assert not torch.allclose(model.perceptron.project(a), model.perceptron.project(b))


def test_the_exact_match_kernel_fires_at_the_anchor_in_training_too() -> None:
    """The anchor is the last item: its similarity must be 1 whether dropout is on or off
    (on the dropped row it was ~0.95 in training, so the exact-match kernel fired at
    evaluation only)."""
    model = _model(dropout=0.5)
    batch, seen = _batch(), {}

    def similarities(module, args, kwargs):
        keys = kwargs.get("undropped")
        keys = args[0] if keys is None else keys
        seen["r"] = torch.nn.functional.cosine_similarity(keys, args[1][:, None], dim=-1)

    model.perceptron.register_forward_pre_hook(similarities, with_kwargs=True)
    last = torch.arange(batch.items.shape[1])[None] == (batch.lengths - 1)[:, None]
    for mode in (model.train, model.eval):
        mode()
        model.encode_sequence(batch.items, batch.lengths)
        assert seen["r"][last].tolist() == pytest.approx([1.0] * len(batch), abs=1e-5)


# ----------------------------------------------------------------------------- contrastive


def test_item_contrastive_toy_value_of_the_spec() -> None:
    """Spec §4.3: cos = [0.5, 0.2, -0.1], keep = [1, 0, 1], w = [0.9, 0.3, 0.6], tau = 0.5."""
    anchor, candidates = _cosine_fixture([0.5, 0.2, -0.1])
    w = torch.tensor([[0.9, 0.3, 0.6]])
    loss = noise_weighted_contrastive(anchor, candidates, torch.tensor([[1.0, 0.0, 1.0]]),
                                      torch.ones(1, 3), 0.5, w, 1 - w)
    assert float(loss) == pytest.approx(0.74758, abs=1e-5)


def test_interest_contrastive_toy_value_of_the_spec() -> None:
    """Spec §4.4, the published rule (negatives weighted by w too): 0.80095."""
    anchor, candidates = _cosine_fixture([0.5, 0.2, -0.1])
    w = torch.tensor([[0.5, 0.3, 0.2]])
    loss = noise_weighted_contrastive(anchor, candidates, torch.tensor([[1.0, 0.0, 1.0]]),
                                      torch.ones(1, 3), 0.5, w, w)
    assert float(loss) == pytest.approx(0.80095, abs=1e-5)


def test_item_contrastive_is_zero_when_nothing_is_dropped() -> None:
    anchor, candidates = _cosine_fixture([0.5, 0.2, -0.1])
    loss = noise_weighted_contrastive(anchor, candidates, torch.ones(1, 3), torch.ones(1, 3),
                                      0.5, torch.full((1, 3), 0.4), torch.full((1, 3), 0.6))
    assert float(loss) == 0.0


def test_weighted_contrastive_against_a_naive_loop() -> None:
    g = torch.Generator().manual_seed(2)
    anchor, candidates = torch.randn(4, 8, generator=g), torch.randn(4, 6, 8, generator=g)
    positive = (torch.rand(4, 6, generator=g) < 0.6).float()
    mask = torch.ones(4, 6)
    mask[0, 4:] = 0
    a, b = torch.rand(4, 6, generator=g), torch.rand(4, 6, generator=g)
    got = noise_weighted_contrastive(anchor, candidates, positive, mask, 0.3, a, b)
    for row in range(4):
        x = [math.exp(float(F.cosine_similarity(candidates[row, i], anchor[row], 0)) / 0.3)
             for i in range(6)]
        real = [i for i in range(6) if mask[row, i]]
        pos = [i for i in real if positive[row, i]]
        neg = sum(float(b[row, j]) * x[j] for j in real if not positive[row, j])
        terms = [-math.log(float(a[row, i]) * x[i] / (float(a[row, i]) * x[i] + neg))
                 for i in pos] if neg > 0 else []
        expected = sum(terms) / max(len(pos), 1)
        assert float(got[row]) == pytest.approx(expected, rel=1e-4, abs=1e-6)


def _cosine_fixture(cosines: list[float]) -> tuple[torch.Tensor, torch.Tensor]:
    """(1, 2) anchor and (1, n, 2) unit candidates with the given cosines to it."""
    angles = torch.arccos(torch.tensor(cosines))
    candidates = torch.stack([torch.cos(angles), torch.sin(angles)], -1)[None]
    return torch.tensor([[1.0, 0.0]]), candidates


# ----------------------------------------------------------------------------- forward


def test_shapes_masks_and_fallbacks() -> None:
    model, batch = _model().eval(), _batch()
    with torch.no_grad():
        parts = model.granularities(batch)
    B = len(batch)
    real = batch.items > 0
    assert parts.encoded.shape == (B, MAX_LEN, H)
    assert torch.equal(parts.encoded[~real], torch.zeros_like(parts.encoded[~real]))
    assert parts.log_probs.shape == (B, MAX_LEN, 2)
    assert torch.allclose(parts.log_probs.exp().sum(-1), torch.ones(B, MAX_LEN))
    assert ((parts.keep == 0) | (parts.keep == 1)).all() and (parts.keep[~real] == 0).all()
    assert (parts.keep.sum(1) >= 1).all()
    assert parts.interests.shape == (B, K)
    assert torch.allclose(parts.interests.sum(1), torch.ones(B), atol=1e-6)
    assert ((parts.selected == 0) | (parts.selected == 1)).all()
    assert torch.equal(parts.selected.sum(1), torch.full((B,), 2.0))  # 0.6 of 5 left out
    for r in (parts.sequence, parts.item, parts.interest, parts.user):
        assert r.shape == (B, H)
    assert torch.allclose(parts.user, parts.sequence + parts.item + parts.interest)
    assert model.score_all(batch).shape == (B, N_ITEMS + 1)


def test_sampled_gate_falls_back_to_the_most_recent_item(monkeypatch) -> None:
    model, batch = _model(gate="sampled").train(), _batch()
    drop_all = torch.zeros(len(batch), MAX_LEN, 2)
    drop_all[..., 1] = 50.0
    keep = model.item_keep(F.log_softmax(drop_all, -1), batch.items, batch.lengths, True, 0.5)
    expected = torch.zeros_like(keep)
    expected[torch.arange(len(batch)), batch.lengths - 1] = 1
    assert torch.equal(keep, expected)


def test_straight_through_gradients_reach_the_noise_head_and_the_selector() -> None:
    """Spec §8: dL_item/dW_n2 != 0 through keep (the clean weights are detached, so keep is
    the only path; head_gradient=all, the paper's) and dL_int/dW_a != 0 through h."""
    model, batch = _model(head_gradient="all").train(), _batch(lengths=(MAX_LEN,) * 6)
    parts = model.granularities(batch, sample=True)
    losses = model.contrastive_losses(parts, batch, 0.5)
    head, selector = model.noise_head[-1].weight, model.selector.score.weight
    item_grad = torch.autograd.grad(losses["item_cl"], head, retain_graph=True)[0]
    assert item_grad.abs().sum() > 0
    interest_grad = torch.autograd.grad(losses["interest_cl"], selector)[0]
    assert interest_grad.abs().sum() > 0


@pytest.mark.parametrize("rule", ["all", "weak"])
def test_head_gradient_rule_decides_which_losses_train_the_noise_head(rule: str) -> None:
    """head_gradient=weak: L_ce and L_item leave the noise head untouched (only the weak
    supervision trains it); all: both reach it. The forward values do not depend on the rule."""
    model, batch = _model(head_gradient=rule).train(), _batch(lengths=(MAX_LEN,) * 6)
    torch.manual_seed(1)
    parts = model.granularities(batch, sample=True)
    rec = F.cross_entropy(parts.user @ model.item_embeddings().T, batch.targets)
    item = model.contrastive_losses(parts, batch, 0.5)["item_cl"]
    head = model.noise_head[-1].weight
    for loss in (rec, item):
        (gradient,) = torch.autograd.grad(loss, head, retain_graph=True, allow_unused=True)
        reached = gradient is not None and bool(gradient.abs().sum() > 0)
        assert reached == (rule == "all")
    ws = model.weak_supervision(batch)
    assert torch.autograd.grad(ws, head)[0].abs().sum() > 0
    other = _model(head_gradient="all" if rule == "weak" else "weak").train()
    torch.manual_seed(1)
    assert torch.allclose(other.granularities(batch, sample=True).user, parts.user)


def test_item_encoder_passes_its_gradient_to_the_keep_mask() -> None:
    """The keep values multiply the compacted rows (exactly 1 forward), so r_item's loss
    reaches the gate (the published mask was an index only, spec §7.5)."""
    model, batch = _model().train(), _batch(lengths=(MAX_LEN,) * 6)
    parts = model.granularities(batch, sample=True)
    keep = parts.keep.detach().requires_grad_(True)
    clean = parts.log_probs[..., 0].exp().detach()
    r_item = model.item_representation(parts.encoded.detach(), batch.items, keep, clean)
    (gradient,) = torch.autograd.grad(r_item.square().sum(), keep)
    assert gradient[keep > 0].abs().sum() > 0


def test_compacted_rows_are_the_kept_rows_of_g_in_order() -> None:
    model, batch = _model(**NO_DROPOUT).eval(), _batch(lengths=(MAX_LEN,) * 6)
    with torch.no_grad():
        parts = model.granularities(batch)
        clean = parts.log_probs[..., 0].exp()
        got = model.item_representation(parts.encoded, batch.items, parts.keep, clean)
        for row in range(len(batch)):  # a naive loop: the kept rows, then the encoder
            kept = torch.nonzero(parts.keep[row]).flatten()
            x = torch.zeros(1, MAX_LEN, H)
            x[0, : len(kept)] = parts.encoded[row, kept] * clean[row, kept, None]
            items = torch.zeros(1, MAX_LEN, dtype=torch.long)
            items[0, : len(kept)] = batch.items[row, kept]
            x = (x + model.positions(MAX_LEN)) * (items > 0)[..., None]
            expected = model.item_encoder(x, attention_mask(items, causal=True),
                                          query=torch.tensor([len(kept) - 1]))
            assert torch.allclose(got[row], expected[0], atol=1e-5)


def test_evaluation_is_deterministic() -> None:
    model, batch = _model().eval(), _batch()
    with torch.no_grad():
        first, second = model.score_all(batch), model.score_all(batch)
        assert torch.equal(first, second)
        assert torch.equal(model.denoising(batch).keep, model.denoising(batch).keep)


# ----------------------------------------------------------------------------- weak supervision


def test_weak_supervision_is_bce_over_real_items_only(monkeypatch) -> None:
    """Padding is never labelled noise: the BCE runs over the real items of the enhanced rows
    (a naive per-item sum here), with label 1 = an original item."""
    model, batch = _model(**NO_DROPOUT).eval(), _batch()
    noisy_items = batch.items.clone()
    is_noise = torch.zeros_like(noisy_items, dtype=torch.bool)
    is_noise[:, 0] = True  # the oldest item of every row plays the inserted one
    fixed = CorruptedRows(items=noisy_items, lengths=batch.lengths, is_noise=is_noise)
    monkeypatch.setattr("denoiserec.models.mgsd_wss.insert_items", lambda *a, **k: fixed)
    with torch.no_grad():
        got = float(model.weak_supervision(batch))
        log_probs = model.noise_log_probs(model.encode_sequence(noisy_items, batch.lengths))
    total, count = 0.0, 0
    for b in range(len(batch)):
        for i in range(int(batch.lengths[b])):
            total -= float(log_probs[b, i, 1 if is_noise[b, i] else 0])
            count += 1
    assert got == pytest.approx(total / count, rel=1e-5)


def test_weak_supervision_inserts_foreign_items_and_keeps_lengths(monkeypatch) -> None:
    seen: list[CorruptedRows] = []

    def spy(*args, **kwargs):
        seen.append(insert_items(*args, **kwargs))
        return seen[-1]

    monkeypatch.setattr("denoiserec.models.mgsd_wss.insert_items", spy)
    model, batch = _model().train(), _batch()
    model.weak_supervision(batch)
    noisy = seen[0]
    assert torch.equal(noisy.lengths, batch.lengths)
    for b in range(len(batch)):
        own = set(batch.items[b].tolist()) | {int(batch.targets[b])}
        assert all(int(x) not in own for x in noisy.items[b][noisy.is_noise[b]])


def test_weak_supervision_share_takes_the_first_rows(monkeypatch) -> None:
    seen: list[torch.Tensor] = []

    def spy(items, *args, **kwargs):
        seen.append(items)
        return insert_items(items, *args, **kwargs)

    monkeypatch.setattr("denoiserec.models.mgsd_wss.insert_items", spy)
    model, batch = _model(ws_share=0.5).train(), _batch()
    model.weak_supervision(batch)
    assert torch.equal(seen[0], batch.items[:3])


# ----------------------------------------------------------------------------- variants


@pytest.mark.parametrize("overrides", [
    {"perceptron": "mlp"}, {"use_item_level": False}, {"use_interest_level": False},
    {"ws_weight": 0.0, "head_gradient": "all"}, {"gate": "sampled"},
    {"interest_negative_weights": "same"},
    {"backbone": "sasrec"}, {"backbone": "gru4rec"},
])
def test_variants_train_every_parameter_they_use(overrides: dict) -> None:
    model = _model(**overrides).train()
    output = model.loss(_batch(lengths=(MAX_LEN,) * 6), Objective(), model.progress_at(0))
    assert torch.isfinite(output.loss)
    expected = {"rec", "kept", "weight_entropy", "saturated", "interests_kept",
                "interest_entropy", "item_cl", "interest_cl", "ws"}
    if not model.config.use_item_level:
        expected.discard("item_cl")
    if not model.config.use_interest_level:
        expected.discard("interest_cl")
    if model.config.ws_weight == 0:
        expected.discard("ws")
    assert set(output.parts) == expected
    output.loss.backward()
    unused = {"interest_map", "prototypes", "selector"} if not model.config.use_interest_level \
        else set()
    for name, parameter in model.named_parameters():
        if name.split(".")[0] in unused:
            continue
        assert parameter.grad is not None and parameter.grad.abs().sum() > 0, name


@pytest.mark.parametrize("rule", ["complement", "same"])
def test_interest_loss_weights_negatives_by_the_chosen_rule(rule: str) -> None:
    model, batch = _model(interest_negative_weights=rule).eval(), _batch()
    with torch.no_grad():
        parts = model.granularities(batch)
        got = model.contrastive_losses(parts, batch, 0.5)["interest_cl"]
        w = parts.interests
        candidates = model.prototypes[None].expand(len(batch), K, H)
        negative = 1 - w if rule == "complement" else w
        expected = noise_weighted_contrastive(parts.user, candidates, parts.selected,
                                              torch.ones_like(w), 0.5, w, negative).mean()
    assert float(got) == pytest.approx(float(expected), rel=1e-6)


def test_loss_is_the_weighted_sum_of_its_parts() -> None:
    model, batch = _model(ws_weight=2.0, item_weight=3.0, interest_weight=0.5).train(), _batch()
    output = model.loss(batch, Objective(), model.progress_at(0))
    p = output.parts
    expected = p["rec"] + 2.0 * p["ws"] + 3.0 * p["item_cl"] + 0.5 * p["interest_cl"]
    assert float(output.loss.detach()) == pytest.approx(expected, rel=1e-5)


def test_window_instances_are_refused() -> None:
    batch = _batch()
    with pytest.raises(ValueError, match="prefix"):
        model = _model()
        window = dataclasses.replace(batch, targets=batch.items, instances="window")
        model.loss(window, Objective(), model.progress_at(0))


def test_the_three_parts_of_u_start_at_one_scale() -> None:
    """r_int is summed with r_seq and r_item (LayerNorm outputs): at the item table's scale
    it was ~0.5 % of them and the interest level did nothing to the score."""
    model = _model().eval()
    with torch.no_grad():
        parts = model.granularities(_batch())
    for other in (parts.sequence, parts.item):
        ratio = parts.interest.norm(dim=-1) / other.norm(dim=-1)
        assert bool(((ratio > 0.1) & (ratio < 10)).all()), ratio


@pytest.mark.parametrize("name", ["ml-100k", "beauty"])
def test_configs_resolve(name: str) -> None:
    config = load_config(CONFIGS / f"mgsd-wss-{name}.yaml")
    assert isinstance(config.model, MGSDWSSConfig)
    assert config.train.instances == "prefix" and config.train.clip_grad_norm == 5


def test_no_weak_supervision_needs_the_joint_head_gradient() -> None:
    from denoiserec.errors import ConfigError

    with pytest.raises(ConfigError, match="head_gradient=all"):
        MGSDWSSConfig(ws_weight=0.0)
    assert MGSDWSSConfig(ws_weight=0.0, head_gradient="all").ws_weight == 0
