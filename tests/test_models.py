"""Models: one shared check over every registered model, then model-specific properties.

Every model in ``MODELS`` is built with a tiny config (the fields named in ``TINY`` that its
config has) and must pass the shared checks; a new model gets them by registering itself.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

from denoiserec.data.batches import Batch
from denoiserec.models import MODELS, SequentialRecommender, build_model
from denoiserec.models.base import gather_last
from denoiserec.models.bert4rec import cloze_mask
from denoiserec.nn.losses import Objective, uniform_negatives
from tests.batches import random_batch

N_ITEMS, MAX_LEN = 13, 7
LENGTHS = (1, 2, 3, 5, 6, 7, 7, 4)  # B = 8, short and full rows
TINY = {"n_layers": 2, "n_heads": 2, "hidden_size": 16, "inner_size": 32, "embedding_size": 8}
# CTR models (task "ctr") score (history, candidate) pairs: their checks are in test_ctr_models
ALL = sorted(name for name, cls in MODELS.items() if cls.task == "sequential")
CAUSAL = sorted(name for name in ALL if MODELS[name].causal)
BASE_LOSS = sorted(name for name in CAUSAL if MODELS[name].loss is SequentialRecommender.loss)


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny tensors: threads only contend (4x slower on a busy 2-core machine); restored after."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _config(name: str, **overrides):
    cls = MODELS[name].config_class
    fields = {f.name for f in dataclasses.fields(cls)}
    return cls(**{k: v for k, v in {**TINY, **overrides}.items() if k in fields})


def _model(name: str, seed: int = 0, **overrides) -> SequentialRecommender:
    torch.manual_seed(seed)
    return build_model(_config(name, **overrides), N_ITEMS, MAX_LEN)


def _batch(lengths=LENGTHS, width: int = MAX_LEN, seed: int = 0, window: bool = False) -> Batch:
    return random_batch(lengths, N_ITEMS, width, seed, window=window)


def _full_batch(seed: int = 0) -> Batch:
    return _batch(lengths=(MAX_LEN,) * 8, seed=seed)


def _replace_items(batch: Batch, items: torch.Tensor) -> Batch:
    return dataclasses.replace(batch, items=items)


# ----------------------------------------------------------------------------- shared checks


@pytest.mark.parametrize("name", ALL)
def test_registry_name_matches_config(name: str) -> None:
    cls = MODELS[name]
    assert cls.name == name and cls.config_class().name == name
    model = _model(name)
    assert isinstance(model, cls) and model.config == _config(name)


@pytest.mark.parametrize("name", ALL)
def test_score_all_shape(name: str) -> None:
    model = _model(name).eval()
    with torch.no_grad():
        scores = model.score_all(_batch())
        representation = model.sequence_representation(_batch())
    assert scores.shape == (len(LENGTHS), N_ITEMS + 1)
    assert representation.shape[0] == len(LENGTHS) and representation.dim() == 2
    assert torch.isfinite(scores).all()


@pytest.mark.parametrize("name", ALL)
def test_seeded_construction_is_deterministic(name: str) -> None:
    first, again, other = _model(name, seed=3), _model(name, seed=3), _model(name, seed=4)
    a, b, c = first.state_dict(), again.state_dict(), other.state_dict()
    assert list(a) == list(b)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)  # the seed matters
    batch = _batch()
    with torch.no_grad():
        assert torch.equal(first.eval().score_all(batch), again.eval().score_all(batch))


@pytest.mark.parametrize("name", ALL)
def test_eval_scoring_is_repeatable(name: str) -> None:
    model, batch = _model(name).eval(), _batch()
    with torch.no_grad():
        assert torch.equal(model.score_all(batch), model.score_all(batch))


@pytest.mark.parametrize("kind", ["ce", "bpr"])
@pytest.mark.parametrize("name", ALL)
def test_one_backward_reaches_every_parameter(name: str, kind: str) -> None:
    model = _model(name).train()
    batch = _full_batch()  # every position embedding is used
    batch = batch.with_negatives(uniform_negatives(batch.targets, N_ITEMS, 2,
                                                  generator=torch.Generator().manual_seed(0)))
    output = model.loss(batch, Objective(kind, n_negatives=2), model.progress_at(0))
    assert output.loss.dim() == 0 and torch.isfinite(output.loss)
    output.loss.backward()
    for pname, parameter in model.named_parameters():
        if not parameter.requires_grad:
            continue
        assert parameter.grad is not None, f"{pname} gets no gradient"
        assert torch.isfinite(parameter.grad).all(), pname
        assert parameter.grad.abs().sum() > 0, f"{pname} gets a zero gradient"
        if pname.endswith("position_embedding.weight"):
            assert (parameter.grad.abs().sum(1) > 0).all(), f"a row of {pname} is not trained"


@pytest.mark.parametrize("name", ALL)
def test_state_dict_round_trip_gives_identical_scores(name: str, tmp_path: Path) -> None:
    model, batch = _model(name, seed=1).eval(), _batch()
    if hasattr(model, "output_bias"):  # zero at initialisation: make it matter
        with torch.no_grad():
            model.output_bias.normal_()
    path = tmp_path / "model.pt"
    torch.save(model.state_dict(), path)
    fresh = _model(name, seed=2).eval()
    with torch.no_grad():
        assert not torch.equal(fresh.score_all(batch), model.score_all(batch))
        fresh.load_state_dict(torch.load(path, weights_only=True))
        assert torch.equal(fresh.score_all(batch), model.score_all(batch))


@pytest.mark.parametrize("name", ALL)
def test_extra_padding_columns_change_nothing(name: str) -> None:
    """The same sequences padded to width 5 or 7 (no row full at width 5) score the same."""
    model = _model(name).eval()
    narrow = _batch(lengths=(1, 2, 3, 4, 4, 1, 2, 3), width=5)
    wide = dataclasses.replace(
        narrow, items=torch.cat([narrow.items, torch.zeros(8, 2, dtype=torch.long)], 1),
        rows=torch.cat([narrow.rows, torch.full((8, 2), -1)], 1))
    with torch.no_grad():
        assert torch.allclose(model.score_all(narrow), model.score_all(wide), atol=1e-5)


# ----------------------------------------------------------------------------- causal models


@pytest.mark.parametrize("name", CAUSAL)
@pytest.mark.parametrize("j", [1, 3, 6])
def test_encode_is_causal(name: str, j: int) -> None:
    model, batch = _model(name).eval(), _full_batch()
    items = batch.items.clone()
    items[:, j] = items[:, j] % N_ITEMS + 1  # a different real item at position j
    with torch.no_grad():
        before, after = model.encode(batch), model.encode(_replace_items(batch, items))
    assert torch.allclose(before[:, :j], after[:, :j], atol=1e-6)
    assert not torch.allclose(before[:, j], after[:, j], atol=1e-4)  # the change is seen at j


@pytest.mark.parametrize("name", CAUSAL)
def test_items_beyond_length_do_not_change_the_last_representation(name: str) -> None:
    model, batch = _model(name).eval(), _batch()
    garbage = torch.randint(1, N_ITEMS + 1, batch.items.shape,
                            generator=torch.Generator().manual_seed(9))
    items = torch.where(batch.padding_mask, batch.items, garbage)
    with torch.no_grad():
        expected = model.sequence_representation(batch)
        actual = model.sequence_representation(_replace_items(batch, items))
        hidden = model.encode(_replace_items(batch, items))
    assert torch.allclose(actual, expected, atol=1e-6)
    assert torch.allclose(gather_last(hidden, batch.lengths), expected, atol=1e-5)


def _hand_cross_entropy(hidden: torch.Tensor, items: torch.Tensor, targets: torch.Tensor):
    terms = []
    for h, t in zip(hidden.reshape(-1, hidden.shape[-1]), targets.reshape(-1).tolist(),
                    strict=True):
        if t == 0:
            continue
        logits = items @ h
        terms.append(torch.log(torch.exp(logits).sum()) - logits[t])
    return torch.stack(terms).mean()


@pytest.mark.parametrize("name", BASE_LOSS)
def test_window_loss_is_cross_entropy_over_real_positions(name: str) -> None:
    model, batch = _model(name).eval(), _batch(window=True)
    with torch.no_grad():
        loss = model.loss(batch, Objective(), model.progress_at(0)).loss
        hidden, items = model.encode(batch), model.item_embeddings()
    real = [(b, t) for b in range(len(batch)) for t in range(int(batch.lengths[b]))]
    expected = _hand_cross_entropy(torch.stack([hidden[b, t] for b, t in real]), items,
                                   torch.tensor([int(batch.targets[b, t]) for b, t in real]))
    assert torch.allclose(loss, expected, atol=1e-5)


@pytest.mark.parametrize("name", BASE_LOSS)
def test_prefix_loss_is_cross_entropy_at_the_last_position(name: str) -> None:
    model, batch = _model(name).eval(), _batch()
    with torch.no_grad():
        loss = model.loss(batch, Objective(), model.progress_at(0)).loss
        hidden, items = model.encode(batch), model.item_embeddings()
    last = torch.stack([hidden[b, int(batch.lengths[b]) - 1] for b in range(len(batch))])
    assert torch.allclose(loss, _hand_cross_entropy(last, items, batch.targets), atol=1e-5)


# ----------------------------------------------------------------------------- SASRec


def test_sasrec_last_block_at_query_equals_full_encode() -> None:
    model = _model("sasrec", n_layers=3).eval()
    for seed in range(3):
        batch = _batch(seed=seed)
        with torch.no_grad():
            fast = model.sequence_representation(batch)
            full = model.encode(batch)
        expected = torch.stack([full[b, int(batch.lengths[b]) - 1] for b in range(len(batch))])
        assert torch.allclose(fast, expected, atol=1e-5)
        assert torch.allclose(fast, gather_last(full, batch.lengths), atol=1e-5)


# ----------------------------------------------------------------------------- BERT4Rec


def test_cloze_fine_tuning_masks_exactly_the_last_item() -> None:
    batch = _batch()
    for seed in range(5):
        torch.manual_seed(seed)
        masked, predicted, last_only = cloze_mask(batch.items, batch.lengths, 0.5, 1.0, 3)
        assert last_only
        expected = torch.zeros_like(masked)
        expected[torch.arange(len(batch)), batch.lengths - 1] = True
        assert torch.equal(masked, expected) and torch.equal(predicted, expected)


@pytest.mark.parametrize("max_predictions", [1, 2, 7])
def test_cloze_masking_against_naive_rule(max_predictions: int) -> None:
    batch = _batch()
    for seed in range(10):
        torch.manual_seed(seed)
        masked, predicted, last_only = cloze_mask(batch.items, batch.lengths, 0.5, 0.0,
                                                  max_predictions)
        assert not last_only
        assert not (masked & (batch.items == 0)).any()  # padding is never masked
        assert not (predicted & ~masked).any()  # predicted is a subset of masked
        for b in range(len(batch)):
            positions = masked[b].nonzero().flatten().tolist()
            last = positions[-max_predictions:] if positions else []
            assert predicted[b].nonzero().flatten().tolist() == last


def test_cloze_masking_ratio_is_roughly_honoured() -> None:
    batch = _full_batch()
    torch.manual_seed(0)
    counts = [cloze_mask(batch.items, batch.lengths, 0.3, 0.0, 7)[0].float().mean()
              for _ in range(50)]
    assert abs(float(torch.stack(counts).mean()) - 0.3) < 0.05


def _hand_appended(batch: Batch, mask_token: int) -> tuple[torch.Tensor, torch.Tensor]:
    width = batch.items.shape[1]
    rows, lengths = [], []
    for b in range(len(batch)):
        sequence = batch.items[b, : int(batch.lengths[b])].tolist()
        if len(sequence) == width:
            sequence = sequence[1:]  # a full window drops its oldest item
        sequence = [*sequence, mask_token]
        lengths.append(len(sequence))
        rows.append(sequence + [0] * (width - len(sequence)))
    return torch.tensor(rows), torch.tensor(lengths)


def test_bert4rec_appends_the_mask_after_the_last_item() -> None:
    model, batch = _model("bert4rec").eval(), _batch()
    items, lengths = model._with_mask_appended(batch)
    expected_items, expected_lengths = _hand_appended(batch, N_ITEMS + 1)
    assert torch.equal(items, expected_items) and torch.equal(lengths, expected_lengths)
    with torch.no_grad():
        hidden = model.encode(_replace_items(batch, expected_items))
        representation = model.sequence_representation(batch)
    expected = torch.stack([hidden[b, int(expected_lengths[b]) - 1] for b in range(len(batch))])
    assert torch.allclose(representation, expected, atol=1e-6)


def test_bert4rec_scores_items_with_output_bias_and_not_the_mask_token() -> None:
    model, batch = _model("bert4rec").eval(), _batch()
    with torch.no_grad():
        model.output_bias.normal_()
        scores = model.score_all(batch)
        representation = model.sequence_representation(batch)
    weights = model.item_embedding.weight
    assert weights.shape[0] == N_ITEMS + 2  # padding, items, mask token
    assert torch.equal(model.item_embeddings(), weights[: N_ITEMS + 1])
    assert scores.shape == (len(batch), N_ITEMS + 1)
    expected = torch.stack([
        torch.stack([(representation[b] * weights[i]).sum() + model.output_bias[i]
                     for i in range(N_ITEMS + 1)])
        for b in range(len(batch))
    ])
    assert torch.allclose(scores, expected, atol=1e-5)


def test_bert4rec_fine_tuning_loss_is_cross_entropy_of_the_masked_last_item() -> None:
    model, batch = _model("bert4rec", ft_ratio=1.0).eval(), _batch()
    with torch.no_grad():
        model.output_bias.normal_()
        loss = model.loss(batch, Objective(), model.progress_at(0)).loss
        items = batch.items.clone()
        items[torch.arange(len(batch)), batch.lengths - 1] = N_ITEMS + 1
        hidden = model.encode(_replace_items(batch, items))
        terms = []
        for b in range(len(batch)):
            last = int(batch.lengths[b]) - 1
            logits = model.item_embeddings() @ hidden[b, last] + model.output_bias
            terms.append(torch.log(torch.exp(logits).sum()) - logits[batch.items[b, last]])
    assert torch.allclose(loss, torch.stack(terms).mean(), atol=1e-5)


@pytest.mark.parametrize("name", ALL)
def test_label_smoothing_reaches_the_models_own_loss(name: str) -> None:
    """Smoothed CE is affine in the smoothing: ``(1 - e) CE + e U`` (U the mean of -log p over
    the classes), so with every random draw repeated the recommendation term at e = 0, 0.1 and
    0.2 is evenly spaced, and moves. A loss that drops the smoothing stays put. (Late enough
    for MSDCCL's curriculum to keep every row: its selection would depend on e.)"""
    model = _model(name, seed=0).eval()
    batch = _batch()
    progress = model.progress_at(50)
    terms = []
    for smoothing in (0.0, 0.1, 0.2):
        torch.manual_seed(0)
        parts = model.loss(batch, Objective("ce", label_smoothing=smoothing), progress).parts
        terms.append(parts.get("rec", parts.get("cloze")))
    assert abs(terms[1] - terms[0]) > 1e-4, f"{name}: label smoothing changes nothing"
    assert terms[2] - terms[1] == pytest.approx(terms[1] - terms[0], rel=1e-4, abs=1e-6)
