"""Training-progress schedules that models read in ``on_batch_start(epoch, step)``.

* Curriculum drop rates (MSDCCL §4.5 of the paper, msdccl spec §4.4): in epoch ``e`` the
  ``d_e`` fraction of a mini-batch with the largest losses is left out of the loss
  (self-paced, within the batch), ``d_e`` falling from ``max_drop`` to 0 over
  ``curriculum_epochs`` epochs along an S-shaped (sigmoid) or a linear curve.
* Temperature annealing: exponential decay from a start value to a floor, reached after a
  given fraction of training, or the reference code's compounding per-40-batch rule.
"""

from __future__ import annotations

import math

import torch

CURRICULA = ("s-shaped", "linear", "none")
ANNEALING = ("exponential", "reference", "none")


def curriculum_drop_rate(epoch: int, mode: str = "s-shaped", epochs: int = 10,
                         extent: float = 5.0, max_drop: float = 0.2) -> float:
    """Fraction d_e of each batch's hardest samples left out of the loss in ``epoch`` (from 0).

    ``s-shaped`` is the reference's ``round(1 - sigmoid(x_e), 4) * max_drop`` with
    ``x = linspace(-extent, extent, epochs)`` (0.19866, 0.19598, ... for the defaults);
    ``linear`` is ``max_drop * (1 - e / epochs)``; both are 0 from ``epochs`` on.
    """
    if mode not in CURRICULA:
        raise ValueError(f"curriculum must be one of {CURRICULA}, got '{mode}'")
    if mode == "none" or epoch >= epochs or max_drop <= 0:
        return 0.0
    if mode == "linear":
        return max_drop * (1.0 - epoch / epochs)
    x = -extent + 2.0 * extent * epoch / (epochs - 1) if epochs > 1 else 0.0  # linspace
    return round(1.0 - 1.0 / (1.0 + math.exp(-x)), 4) * max_drop


def kept_count(batch_size: int, drop_rate: float) -> int:
    """floor((1 - d) * B) samples kept (at least one)."""
    return max(1, math.floor((1.0 - drop_rate) * batch_size + 1e-9))


def easiest_mean(losses: torch.Tensor, drop_rate: float) -> torch.Tensor:
    """Mean of the ``kept_count`` smallest of the per-sample ``losses`` (B,)."""
    k = kept_count(losses.shape[0], drop_rate)
    if k >= losses.shape[0]:
        return losses.mean()
    return torch.topk(losses, k, largest=False, sorted=False).values.mean()


def anneal_temperature(start: float, floor: float, step: int, steps_to_floor: float | None,
                       mode: str = "exponential", every: int = 40,
                       rate: float = 1e-3) -> float:
    """Temperature after ``step`` training batches (``step`` counts from 0).

    Args:
        start: initial temperature.
        floor: lowest temperature.
        step: global batch index.
        steps_to_floor: ``exponential`` only: batches after which ``floor`` is reached
            (``None`` = not known yet: the start value).
        mode: ``exponential`` = ``start * (floor / start) ** (step / steps_to_floor)``, never
            below ``floor``; ``reference`` = the reference trainer's rule (every ``every``-th
            batch k, counted from 1, multiply by ``exp(-rate * k)``: the decay compounds,
            msdccl spec §4.3); ``none`` = constant ``start``.
    """
    if mode not in ANNEALING:
        raise ValueError(f"annealing must be one of {ANNEALING}, got '{mode}'")
    if mode == "none" or start <= floor:
        return start
    if mode == "reference":
        events = (step + 1) // every
        return max(floor, start * math.exp(-rate * every * events * (events + 1) / 2))
    if not steps_to_floor:
        return start
    progress = min(1.0, step / steps_to_floor)
    return max(floor, start * (floor / start) ** progress)


class TemperatureSchedule:
    """The Gumbel and contrastive temperatures of a denoiser, annealed per training batch.

    ``exponential`` reaches the floors after ``anneal_epochs`` epochs; the batches per epoch are
    inferred at the first batch of a later epoch (the start values hold in epoch 0), so the
    schedule needs no knowledge of the data and resumes exactly (it is a function of
    ``epoch`` and ``step``).
    """

    def __init__(self, gumbel: tuple[float, float], contrastive: tuple[float, float],
                 anneal_epochs: float, mode: str) -> None:
        self.gumbel_range, self.contrastive_range = gumbel, contrastive
        self.anneal_epochs, self.mode = anneal_epochs, mode
        self.steps_per_epoch: int | None = None
        self.gumbel, self.contrastive = gumbel[0], contrastive[0]

    def update(self, epoch: int, step: int) -> None:
        """Set ``gumbel`` and ``contrastive`` for batch ``step`` (global, from 0) of ``epoch``."""
        if epoch > 0 and self.steps_per_epoch is None:
            self.steps_per_epoch = max(1, step // epoch)
        horizon = self.steps_per_epoch * self.anneal_epochs if self.steps_per_epoch else None
        self.gumbel = anneal_temperature(*self.gumbel_range, step, horizon, self.mode)
        self.contrastive = anneal_temperature(*self.contrastive_range, step, horizon, self.mode)
