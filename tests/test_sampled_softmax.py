"""Sampled softmax with logQ correction against the full cross-entropy."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from denoiserec.nn.sampled_softmax import (
    draw_negatives,
    popularity_proposal,
    sampled_softmax,
    sampled_softmax_loss,
    uniform_proposal,
)

V, D, N = 200, 16, 64


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


def _problem(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Hidden (N, D), item table (V + 1, D) and targets in 1..V; logits have std ~1.5."""
    g = torch.Generator().manual_seed(seed)
    hidden = torch.randn(N, D, generator=g) * 0.6
    items = torch.randn(V + 1, D, generator=g) * 0.6
    return hidden, items, torch.randint(1, V + 1, (N,), generator=g)


def _full_ce(hidden: torch.Tensor, items: torch.Tensor, targets: torch.Tensor,
             reduction: str = "mean") -> torch.Tensor:
    """Cross-entropy over items 1..V (no padding column)."""
    return F.cross_entropy(hidden @ items[1:].T, targets - 1, reduction=reduction)


def test_whole_catalogue_with_uniform_q_is_the_full_cross_entropy() -> None:
    hidden, items, targets = _problem()
    every_item = torch.arange(1, V + 1)  # k = V, q = 1/V: k q = 1, no correction
    proposal = uniform_proposal(V)
    losses = sampled_softmax(hidden, items, targets, every_item, proposal, reduction="none")
    torch.testing.assert_close(losses, _full_ce(hidden, items, targets, "none"),
                               rtol=0, atol=1e-6)
    mean = sampled_softmax(hidden, items, targets, every_item, proposal)
    assert abs(float(mean) - float(_full_ce(hidden, items, targets))) < 1e-6


@pytest.mark.parametrize("popularity", [False, True])
def test_sampled_gradient_and_loss_approach_the_full_cross_entropy(popularity: bool) -> None:
    """Over many draws of k = 200 shared negatives (with replacement):

    - the mean gradient (w.r.t. hidden and items) points where the full CE's does (cosine >
      0.99; one draw alone: ~0.97);
    - ``loss - log(k q(target))`` estimates ``log Z_hat - s_t``, whose mean is the full CE
      minus the Jensen gap of ``log Z_hat``. The delta method gives that gap as
      ``-Var(Z_hat) / (2 Z^2)`` per row, computed exactly below; we require the measured mean
      to match ``CE + gap`` within 4 standard errors plus 30% of the gap (the neglected
      higher-order terms; they are < 15% at k = 200 here).
    """
    hidden, items, targets = _problem()
    k, draws = 200, 300
    weights = torch.arange(V + 1.0) ** 0.5 + 1  # a skewed proposal
    proposal = popularity_proposal(weights) if popularity else None
    q = proposal if popularity else uniform_proposal(V)

    h, it = hidden.clone().requires_grad_(), items.clone().requires_grad_()
    full_loss = _full_ce(h, it, targets)
    full_loss.backward()
    full = float(full_loss.detach())
    full_grad = torch.cat([h.grad.flatten(), it.grad[1:].flatten()])

    generator = torch.Generator().manual_seed(1)
    grads, adjusted = [], []
    for _ in range(draws):
        h, it = hidden.clone().requires_grad_(), items.clone().requires_grad_()
        losses = sampled_softmax_loss(h, it, targets, k, proposal, generator, reduction="none")
        losses.mean().backward()
        grads.append(torch.cat([h.grad.flatten(), it.grad[1:].flatten()]))
        adjusted.append(float((losses.detach() - torch.log(k * q[targets]).float()).mean()))
    mean_grad = torch.stack(grads).mean(0)
    assert F.cosine_similarity(mean_grad, full_grad, dim=0) > 0.99

    scores = (hidden @ items[1:].T).double().exp()  # (N, V)
    others = torch.ones_like(scores, dtype=torch.bool)
    others[torch.arange(N), targets - 1] = False  # masked accidental hits
    z = scores.sum(1)
    first = (scores * others).sum(1)
    second = (scores ** 2 / q[1:] * others).sum(1)
    gap = float((-(second - first ** 2) / (2 * k * z ** 2)).mean())
    measured = sum(adjusted) / draws
    standard_error = float(torch.tensor(adjusted).std()) / math.sqrt(draws)
    assert abs(measured - (full + gap)) < 4 * standard_error + 0.3 * abs(gap)
    assert abs(measured - full) < 0.05  # a small bias in absolute terms too


def test_accidental_hits_are_masked_by_hand() -> None:
    items = torch.tensor([[0.0, 0.0], [1.0, 0.0], [2.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    hidden = torch.tensor([[1.0, 0.0], [0.0, 1.0], [5.0, 5.0]])
    targets = torch.tensor([2, 3, 0])  # the last row has no target
    negatives = torch.tensor([2, 3, 2, 1])  # k = 4, q = 1/4: k q = 1, no correction
    losses = sampled_softmax(hidden, items, targets, negatives, uniform_proposal(4),
                             reduction="none")
    e = math.e
    # row 0: target 2 (score 2) is drawn twice: both masked; 3 -> 0, 1 -> 1
    # row 1: target 3 (score 1) masked; 2 -> 0 twice (duplicates of other items count), 1 -> 0
    expected = [-math.log(e ** 2 / (e ** 2 + 1 + e)), -math.log(e / (e + 3)), 0.0]
    torch.testing.assert_close(losses, torch.tensor(expected), rtol=0, atol=1e-6)
    mean = sampled_softmax(hidden, items, targets, negatives, uniform_proposal(4))
    assert abs(float(mean) - sum(expected[:2]) / 2) < 1e-6  # rows without target not averaged


def test_log_q_correction_by_hand() -> None:
    """Popularity q: every logit is lowered by log(k q(item))."""
    items = torch.tensor([[0.0], [1.0], [2.0], [3.0]])
    hidden = torch.tensor([[1.0]])
    proposal = popularity_proposal(torch.tensor([9.0, 1.0, 1.0, 2.0]))  # q = 1/4, 1/4, 1/2
    negatives = torch.tensor([3, 1])  # k = 2
    loss = sampled_softmax(hidden, items, torch.tensor([2]), negatives, proposal)
    logits = torch.tensor([2 - math.log(0.5), 3 - math.log(1.0), 1 - math.log(0.5)])
    assert abs(float(loss) - float(-torch.log_softmax(logits, 0)[0])) < 1e-6


def test_window_shaped_targets_and_determinism() -> None:
    hidden, items, _ = _problem()
    g = torch.Generator().manual_seed(3)
    targets = torch.randint(0, V + 1, (8, 8), generator=g)  # 0 = no target at that position
    hidden = hidden.reshape(8, 8, D)
    run = [sampled_softmax_loss(hidden, items, targets, 32,
                                generator=torch.Generator().manual_seed(seed), reduction="none")
           for seed in (5, 5, 6)]
    assert run[0].shape == targets.shape
    assert torch.equal(run[0], run[1]) and not torch.equal(run[0], run[2])
    assert (run[0][targets == 0] == 0).all() and (run[0][targets != 0] > 0).all()
    mean = sampled_softmax_loss(hidden, items, targets, 32,
                                generator=torch.Generator().manual_seed(5))
    assert abs(float(mean) - float(run[0][targets != 0].mean())) < 1e-6


def test_padding_is_never_drawn() -> None:
    g = torch.Generator().manual_seed(0)
    uniform = draw_negatives(3, 100_000, generator=g)
    counts = torch.tensor([1e9, 1.0, 0.0, 5.0])  # the huge padding count is ignored
    popular = draw_negatives(3, 100_000, popularity_proposal(counts), generator=g)
    assert set(uniform.tolist()) == {1, 2, 3}
    assert set(popular.tolist()) == {1, 3}  # q(2) = 0 too
    assert abs(float((popular == 3).float().mean()) - 5 / 6) < 0.01
    for proposal in (uniform_proposal(3), popularity_proposal(counts)):
        assert proposal[0] == 0 and abs(float(proposal.sum()) - 1) < 1e-12


def test_bad_arguments() -> None:
    hidden, items, targets = _problem()
    with pytest.raises(ValueError, match="reduction"):
        sampled_softmax_loss(hidden, items, targets, 4, reduction="sum")
    with pytest.raises(ValueError, match="entries"):
        draw_negatives(V, 4, uniform_proposal(V - 1))
    with pytest.raises(ValueError, match="positive count"):
        popularity_proposal(torch.tensor([3.0, 0.0]))
