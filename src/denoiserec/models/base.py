"""What every model offers the trainer and the evaluator.

A model sees only a :class:`~denoiserec.data.batches.Batch`. It implements ``encode`` (a
representation per input position) and ``item_embeddings``; the default ``loss`` and
``score_all`` then give RecBole's next-item training (representation at the last real position
scored against every item) and full scoring. Models with their own objective (BERT4Rec's Cloze,
the denoisers' extra terms) override ``loss``.

Training progress reaches a model only as ``loss``'s :class:`TrainingProgress` argument (epoch,
batch, batches per epoch, stage), built by the trainer; a model keeps no training state. A
staged model declares ``training_stage`` and ``parameter_groups``; a denoiser (``denoiser =
True``) declares ``denoising`` and ``noise_scores`` (``models/denoiser.py``).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import nn

from denoiserec.data.batches import Batch
from denoiserec.errors import ConfigError
from denoiserec.models.denoiser import Denoising
from denoiserec.nn.losses import Objective, bpr, cross_entropy
from denoiserec.nn.sampled_softmax import sampled_softmax_loss
from denoiserec.nn.schedules import TrainingProgress, TrainingStage


@dataclass
class ModelOutput:
    """A training step's result: the loss to minimise and its named parts (for logging).

    Attributes:
        loss: the scalar to minimise.
        parts: named parts of it, for logging.
        per_sample: (B,) each training sequence's share of the recommendation term, or None:
            ``per_sample.mean()`` equals the recommendation term inside ``loss``, so a trainer
            that weights sequences (``train.reweight``) swaps that mean for a weighted one. A
            row with several targets (window mode, Cloze) holds the sum of its targets' losses
            divided by the batch's mean count of targets per row (its own mean when every row
            counts as many targets); a row left out of the term (a curriculum) holds 0.
    """

    loss: torch.Tensor
    parts: dict[str, float] = field(default_factory=dict)
    per_sample: torch.Tensor | None = None


def row_shares(losses: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
    """(B,) per-row shares of ``losses.mean()``: ``losses`` (n,) belong to the True cells of
    ``real`` (B, L) in row-major order; row b gets its sum times B / n, so the shares' mean is
    the losses' mean (see ``ModelOutput.per_sample``)."""
    full = losses.new_zeros(real.shape).masked_scatter(real, losses)
    return full.sum(1) * (real.shape[0] / max(losses.numel(), 1))


def gather_last(hidden: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """(B, L, D) -> (B, D): the representation at position ``lengths - 1``."""
    index = (lengths - 1).clamp(min=0)[:, None, None].expand(-1, 1, hidden.shape[-1])
    return hidden.gather(1, index).squeeze(1)


def target_losses(hidden: torch.Tensor, items: torch.Tensor, targets: torch.Tensor,
                  objective: Objective, negatives: torch.Tensor | None) -> torch.Tensor:
    """(n,) the next-item loss of every real (non-zero) target, row-major; their mean is
    ``nn.losses.next_item_loss``."""
    if objective.kind == "ce":
        return cross_entropy(hidden, items, targets, objective.label_smoothing, reduction="none")
    if objective.kind == "sampled":
        losses = sampled_softmax_loss(hidden, items, targets, objective.n_negatives,
                                      reduction="none")
        return losses[targets != 0]
    if objective.kind == "bpr":
        if negatives is None:
            raise ValueError("BPR needs sampled negatives in the batch")
        return bpr(hidden, items, targets, negatives, reduction="none")
    raise ValueError(f"unknown loss '{objective.kind}'")


def check_objective(model: SequentialRecommender, loss: str, label_smoothing: float,
                    n_negatives: int) -> None:
    """Refuse, before training, a ``train.loss`` the model does not implement (it would fail at
    its first batch), a label smoothing its loss would ignore, or more sampled negatives than
    the catalogue has other items (slow, and no longer a sample)."""
    if loss in ("bpr", "sampled") and n_negatives >= model.n_items:
        raise ConfigError(f"train.n_negatives ({n_negatives}) must be below the catalogue's "
                          f"{model.n_items} items; use train.loss=ce to score every item")
    if loss not in model.losses:
        raise ConfigError(f"train.loss={loss}: {model.name} trains with "
                          f"{' or '.join(model.losses)} only")
    if label_smoothing and not model.label_smoothing:
        raise ConfigError(f"train.label_smoothing={label_smoothing:g}: {model.name}'s loss does "
                          "not use it; leave it unset")


class SequentialRecommender(nn.Module, ABC):
    """Base class of next-item models.

    Class attributes:
        name: registry name.
        config_class: the model's config dataclass.
        causal: True when position t only sees items <= t.
        window_training: how the fast mode (``train.instances=window``) trains the model:
            ``next`` (every position predicts its next item; causal models), ``cloze`` (the
            model masks the window's items itself) or ``""`` (prefix instances only; the
            model's ``window_refusal`` says why).
        task: ``sequential`` (next-item over the catalogue) or ``ctr`` (binary click model on
            (history, candidate) pairs, ``models/ctr.py``; trains under ``protocol=ctr`` only).
        denoiser: True when the model judges the items of a sequence itself: it implements
            ``denoising`` and ``noise_scores`` (the denoiser contract,
            ``tests/test_denoiser_contract.py``).
        losses: the ``train.loss`` values the model's ``loss`` implements.
        label_smoothing: whether its ``loss`` applies ``train.label_smoothing``.
    """

    name: ClassVar[str] = ""
    config_class: ClassVar[type] = object
    causal: ClassVar[bool] = True
    window_training: ClassVar[str] = "next"
    window_refusal: ClassVar[str] = ""
    task: ClassVar[str] = "sequential"
    denoiser: ClassVar[bool] = False
    losses: ClassVar[tuple[str, ...]] = ("ce", "bpr", "sampled")
    label_smoothing: ClassVar[bool] = True

    def __init__(self, config: Any, n_items: int, max_len: int) -> None:
        super().__init__()
        self.config = config
        self.n_items = n_items
        self.max_len = max_len

    @classmethod
    def build_encoder(cls, config: Any, max_len: int) -> nn.Module:
        """The model's sequence encoder over given input embeddings (``nn.encoders``), built
        from its own config and not yet initialised (call ``reset_parameters``). The model
        uses it itself, and a denoiser whose ``backbone`` names this model uses the same."""
        raise ConfigError(f"model '{cls.name}' has no encoder a denoiser could use as backbone")

    @classmethod
    def embedding_size(cls, config: Any) -> int:
        """Width of the item embeddings the encoder reads."""
        return int(config.hidden_size)

    @abstractmethod
    def encode(self, batch: Batch) -> torch.Tensor:
        """(B, L, D) representation of every input position."""

    @abstractmethod
    def item_embeddings(self) -> torch.Tensor:
        """(n_items + 1, D) output embeddings of all items, padding included."""

    # -- training progress (nn/schedules.py) -------------------------------------------------
    def training_stage(self, epoch: int) -> TrainingStage | None:
        """The stage ``epoch`` trains (a pure function of the epoch), or None: the default, a
        model without stages, trains every parameter on its whole loss."""
        return None

    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        """A staged model's parameters by group name (``TrainingStage.groups``)."""
        return {"all": list(self.parameters())}

    def progress_at(self, epoch: int, batch: int = 0,
                    steps_per_epoch: int = 1) -> TrainingProgress:
        """The :class:`TrainingProgress` of batch ``batch`` of ``epoch``, with this model's
        stage: what the trainer passes to ``loss``, and what a caller outside it builds."""
        return TrainingProgress(epoch=epoch, batch=batch, steps_per_epoch=steps_per_epoch,
                                stage=self.training_stage(epoch))

    # -- the denoiser interface (models/denoiser.py) ------------------------------------------
    def denoising(self, batch: Batch) -> Denoising:
        """A denoiser's judgement of ``batch``'s items (keep mask, weights, log-probabilities;
        the gate sampled in training only)."""
        raise ConfigError(f"model '{self.name}' is not a denoiser: it has no per-item "
                          "judgement")

    def noise_scores(self, batch: Batch) -> torch.Tensor:
        """(B, L) a denoiser's noise score of every item in [0, 1] (higher = noisier), 0 on
        padding; deterministic."""
        raise ConfigError(f"model '{self.name}' is not a denoiser: it has no noise "
                          "scores of its own")

    def sequence_representation(self, batch: Batch) -> torch.Tensor:
        """(B, D) representation that scores the next item."""
        return gather_last(self.encode(batch), batch.lengths)

    def loss(self, batch: Batch, objective: Objective,
             progress: TrainingProgress) -> ModelOutput:
        """The training loss of ``batch`` at ``progress`` (next-item by default; progress
        unused)."""
        if batch.instances == "prefix":
            hidden = self.sequence_representation(batch)  # (B, D)
        else:
            hidden = self.encode(batch)  # (B, L, D): every position has a target
        losses = target_losses(hidden, self.item_embeddings(), batch.targets, objective,
                               batch.negatives)  # (n,) one per real target
        loss = losses.mean()
        per_sample = row_shares(losses, (batch.targets != 0).reshape(len(batch), -1))
        return ModelOutput(loss=loss, parts={"rec": float(loss.detach())},
                           per_sample=per_sample)

    def score_all(self, batch: Batch) -> torch.Tensor:
        """(B, n_items + 1) scores of every item as the next one (padding column included)."""
        return self.sequence_representation(batch) @ self.item_embeddings().T

    def item_scorer(self, batch: Batch) -> Callable[[int, int], torch.Tensor]:
        """``scores(first, stop)``: the (B, stop - first) scores of items ``first .. stop - 1``,
        from one sequence representation (chunked full ranking over large catalogues). A model
        whose ``score_all`` is its own gets its full scores sliced (no memory saved)."""
        if type(self).score_all is not SequentialRecommender.score_all:
            scores = self.score_all(batch)
            return lambda first, stop: scores[:, first:stop]
        hidden, table = self.sequence_representation(batch), self.item_embeddings()
        return lambda first, stop: hidden @ table[first:stop].T

    def score_candidates(self, batch: Batch, candidates: torch.Tensor) -> torch.Tensor:
        """(B, C) scores of the (B, C) ``candidates`` (the ``ctr`` protocol); CTR models score
        (history, candidate) pairs directly."""
        return self.score_all(batch).gather(1, candidates)
