"""``liveness``'s saturation figure against hand-made judgements: a margin squashed by the
readout's bound never reaches log-probability 0, so saturation must be read on the margin."""

from __future__ import annotations

import pytest
import torch

from denoiserec.models.denoiser import Denoising, liveness
from denoiserec.nn.readout import bounded_log_probs

BOUND = 3.0


def _judgement(raw_margins: list[float], bound: float) -> Denoising:
    raw = torch.tensor([raw_margins])
    logits = torch.stack([raw, torch.zeros_like(raw)], -1)
    return Denoising(log_probs=bounded_log_probs(logits, bound), weights=None, keep=None)


def test_runaway_margins_behind_the_bound_count_as_saturated():
    state = _judgement([30.0, -30.0, 26.0, 1.0], BOUND)  # three far beyond 3 x bound
    mask = torch.ones(1, 4)
    assert liveness(state, mask, BOUND)["saturated"] == pytest.approx(0.75)
    assert liveness(state, mask)["saturated"] == 0.0  # the unbounded rule is blind to them


def test_live_margins_are_not_saturated_and_padding_is_ignored():
    state = _judgement([8.9, -2.0, 0.5, 40.0], BOUND)  # 8.9 < 3 x bound: still moving
    mask = torch.tensor([[1.0, 1.0, 1.0, 0.0]])  # the runaway one is padding
    assert liveness(state, mask, BOUND)["saturated"] == 0.0


def test_without_a_bound_a_log_probability_at_zero_is_saturated():
    state = _judgement([200.0, 0.0], 0.0)
    assert liveness(state, torch.ones(1, 2))["saturated"] == pytest.approx(0.5)
