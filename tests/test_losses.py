"""Losses against their formulas written out by hand, and the negative sampler's guarantees."""

from __future__ import annotations

import pytest
import torch

from denoiserec.nn.losses import (
    Objective,
    bpr,
    cross_entropy,
    next_item_loss,
    uniform_negatives,
)

N_ITEMS, D = 11, 6


def _tensors(shape: tuple[int, ...], seed: int, n_negatives: int = 3) -> tuple[torch.Tensor, ...]:
    """Float64 hidden (*shape, D), items (N_ITEMS + 1, D), targets with some zeros, negatives."""
    g = torch.Generator().manual_seed(seed)
    hidden = torch.randn(*shape, D, generator=g, dtype=torch.float64)
    items = torch.randn(N_ITEMS + 1, D, generator=g, dtype=torch.float64)
    targets = torch.randint(1, N_ITEMS + 1, shape, generator=g)
    targets.view(-1)[::4] = 0  # positions without a target
    negatives = torch.randint(1, N_ITEMS + 1, (*shape, n_negatives), generator=g)
    return hidden, items, targets, negatives


def _hand_cross_entropy(hidden, items, targets) -> torch.Tensor:
    terms = []
    for h, t in zip(hidden.reshape(-1, D), targets.reshape(-1).tolist(), strict=True):
        if t == 0:
            continue
        logits = [(h * items[i]).sum() for i in range(N_ITEMS + 1)]  # padding column included
        log_normaliser = torch.log(sum(torch.exp(s) for s in logits))
        terms.append(log_normaliser - logits[t])
    return sum(terms) / len(terms)


def _hand_bpr(hidden, items, targets, negatives) -> torch.Tensor:
    terms = []
    flat_negatives = negatives.reshape(-1, negatives.shape[-1])
    for h, t, negs in zip(hidden.reshape(-1, D), targets.reshape(-1).tolist(), flat_negatives,
                          strict=True):
        if t == 0:
            continue
        positive = (h * items[t]).sum()
        for n in negs.tolist():
            difference = positive - (h * items[n]).sum()
            terms.append(-torch.log(1.0 / (1.0 + torch.exp(-difference))))
    return sum(terms) / len(terms)


@pytest.mark.parametrize("shape", [(8,), (4, 7)], ids=["B", "BL"])
def test_cross_entropy_matches_hand_log_softmax(shape: tuple[int, ...]) -> None:
    hidden, items, targets, _ = _tensors(shape, seed=1)
    expected = _hand_cross_entropy(hidden, items, targets)
    assert torch.allclose(cross_entropy(hidden, items, targets), expected, atol=1e-10)
    assert torch.allclose(next_item_loss(hidden, items, targets, Objective("ce"), None),
                          expected, atol=1e-10)


def test_cross_entropy_ignores_zero_targets_whatever_their_hidden() -> None:
    hidden, items, targets, _ = _tensors((4, 7), seed=2)
    changed = hidden.clone()
    changed[targets == 0] = 1e3  # would dominate the loss if those positions counted
    assert torch.allclose(cross_entropy(changed, items, targets),
                          cross_entropy(hidden, items, targets), atol=1e-12)


@pytest.mark.parametrize("shape", [(8,), (4, 7)], ids=["B", "BL"])
@pytest.mark.parametrize("n_negatives", [1, 3])
def test_bpr_matches_hand_formula(shape: tuple[int, ...], n_negatives: int) -> None:
    hidden, items, targets, negatives = _tensors(shape, seed=3, n_negatives=n_negatives)
    expected = _hand_bpr(hidden, items, targets, negatives)
    assert torch.allclose(bpr(hidden, items, targets, negatives), expected, atol=1e-10)
    objective = Objective("bpr", n_negatives=n_negatives)
    assert torch.allclose(next_item_loss(hidden, items, targets, objective, negatives),
                          expected, atol=1e-10)


def test_next_item_loss_rejects_bad_inputs() -> None:
    hidden, items, targets, _ = _tensors((8,), seed=4)
    with pytest.raises(ValueError, match="negatives"):
        next_item_loss(hidden, items, targets, Objective("bpr"), None)
    with pytest.raises(ValueError, match="loss must be one of"):
        next_item_loss(hidden, items, targets, Objective("top1"), None)


@pytest.mark.parametrize("n_items", [2, 3, 50])
@pytest.mark.parametrize("shape", [(64,), (8, 7)], ids=["B", "BL"])
def test_sample_negatives_avoid_the_positive_and_stay_in_range(n_items: int,
                                                               shape: tuple[int, ...]) -> None:
    g = torch.Generator().manual_seed(5)
    targets = torch.randint(1, n_items + 1, shape, generator=g)
    negatives = uniform_negatives(targets, n_items, 4, generator=g)
    assert negatives.shape == (*shape, 4)
    assert negatives.dtype == torch.int64
    assert ((negatives >= 1) & (negatives <= n_items)).all()
    assert (negatives != targets[..., None]).all()
    if n_items == 2:  # the only allowed negative is the other item
        assert torch.equal(negatives, (3 - targets)[..., None].expand_as(negatives))


def test_sample_negatives_reach_every_other_item_and_are_seeded() -> None:
    targets = torch.full((200,), 2)
    first = uniform_negatives(targets, 5, 3, generator=torch.Generator().manual_seed(6))
    again = uniform_negatives(targets, 5, 3, generator=torch.Generator().manual_seed(6))
    assert torch.equal(first, again)
    assert set(first.unique().tolist()) == {1, 3, 4, 5}


def test_per_sample_reductions_match_a_hand_computation():
    torch.manual_seed(3)
    hidden, items = torch.randn(4, 5), torch.randn(7, 5)
    targets, negatives = torch.tensor([1, 0, 6, 2]), torch.randint(1, 7, (4, 3))
    logits = hidden @ items.T
    expected_ce = [float(-logits[i].log_softmax(-1)[t]) for i, t in enumerate(targets) if t]
    per_ce = cross_entropy(hidden, items, targets, reduction="none")
    assert per_ce.tolist() == pytest.approx(expected_ce, rel=1e-5)
    assert float(cross_entropy(hidden, items, targets)) == pytest.approx(sum(expected_ce) / 3)
    expected_bpr = [
        sum(float(-torch.nn.functional.logsigmoid(logits[i, t] - logits[i, n]))
            for n in negatives[i]) / 3
        for i, t in enumerate(targets) if t]
    per_bpr = bpr(hidden, items, targets, negatives, reduction="none")
    assert per_bpr.tolist() == pytest.approx(expected_bpr, rel=1e-5)
