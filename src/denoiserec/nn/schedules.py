"""Training progress, and the schedules computed from it.

The trainer builds a :class:`TrainingProgress` for every batch (epoch, batch, batches per
epoch, stage) and passes it to ``model.loss``; a model computes its schedules from it and keeps
no training state of its own, so a loss is a function of its arguments, a resumed run takes the
same steps, and a caller outside the trainer says where training is.

* Stages (END4Rec's guided training): a staged model maps an epoch to a :class:`TrainingStage`
  (``SequentialRecommender.training_stage``); the trainer freezes the other parameter groups
  (``train/stages.py``) and passes the stage in the progress.
* Curriculum drop rates (MSDCCL §4.5 of the paper, msdccl spec §4.4): in epoch ``e`` the
  ``d_e`` fraction of a mini-batch with the largest losses is left out of the loss
  (self-paced, within the batch), ``d_e`` falling from ``max_drop`` to 0 over
  ``curriculum_epochs`` epochs along an S-shaped (sigmoid) or a linear curve.
* Temperature annealing: exponential decay from a start value to a floor, reached after a
  given fraction of training, or the reference code's compounding per-40-batch rule.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

CURRICULA = ("s-shaped", "linear", "none")
ANNEALING = ("exponential", "reference", "none")


@dataclass(frozen=True)
class TrainingStage:
    """One training stage: its number (1-based), the parameter groups it trains (names of the
    model's ``parameter_groups()``), the epoch it starts at, and the factor on the learning
    rate."""

    number: int
    groups: tuple[str, ...]
    first_epoch: int
    lr_scale: float = 1.0


@dataclass(frozen=True)
class TrainingProgress:
    """Where training is when a loss is computed (the trainer builds one per batch).

    Attributes:
        epoch: the epoch, counted from 0.
        batch: the batch within the epoch, from 0.
        steps_per_epoch: batches in a full epoch (also when a run trains only the first
            ``max_batches`` of each epoch: the schedules follow the full epochs).
        stage: the model's stage in this epoch (``model.training_stage(epoch)``), None for a
            model without stages.
    """

    epoch: int
    batch: int
    steps_per_epoch: int
    stage: TrainingStage | None = None

    @property
    def step(self) -> int:
        """The global batch index, from 0: ``epoch * steps_per_epoch + batch``."""
        return self.epoch * self.steps_per_epoch + self.batch


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


@dataclass(frozen=True)
class Temperatures:
    """The Gumbel gate's and the contrastive loss's temperatures at one batch."""

    gumbel: float
    contrastive: float


@dataclass(frozen=True)
class TemperatureSchedule:
    """The Gumbel and contrastive temperatures of a denoiser, annealed per training batch.

    ``exponential`` holds the start values through epoch 0, then decays in the global step
    (``progress.step``) to reach the floors after ``anneal_epochs`` epochs. (Epoch 0 at the
    start values is the rule earlier versions followed when they inferred the epoch length at
    the first batch of epoch 1; it is kept so that their numbers are kept.)

    Attributes:
        gumbel: (start, floor) of the Gumbel temperature; contrastive: likewise.
        anneal_epochs: epochs after which ``exponential`` reaches the floors.
        mode: ``exponential`` | ``reference`` | ``none`` (see :func:`anneal_temperature`).
    """

    gumbel: tuple[float, float]
    contrastive: tuple[float, float]
    anneal_epochs: float
    mode: str

    @property
    def start(self) -> Temperatures:
        """The start values (evaluation and diagnostics: there the temperatures shape no
        gradient, and a sampled gate's forward choice does not depend on them)."""
        return Temperatures(self.gumbel[0], self.contrastive[0])

    def at(self, progress: TrainingProgress) -> Temperatures:
        """The temperatures of the batch ``progress`` points at."""
        horizon = progress.steps_per_epoch * self.anneal_epochs if progress.epoch > 0 else None
        return Temperatures(
            anneal_temperature(*self.gumbel, progress.step, horizon, self.mode),
            anneal_temperature(*self.contrastive, progress.step, horizon, self.mode))
