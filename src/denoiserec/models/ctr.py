"""What CTR models (DIN, DCN, Wide&Deep; ATJT spec §5) share: binary click training on
(history, candidate, label) samples of the ``ctr`` protocol (``data/ctr.py``, spec §1).

A CTR model scores (history, candidate) pairs, ``logits(batch, candidates) -> (B, C)`` click
log-odds. Its loss is binary cross-entropy: each row's target is a positive (label 1), the
row's fixed sampled negatives (``batch.negatives``, attached by the trainer under ``ctr``) are
negatives (label 0), and a row's ``per_sample`` loss is the mean over its positive and
negatives, so ATJT's L_R = sum w l / sum w gives a positive and its paired negatives the
positive's weight (spec §4.1: ``w = concat(w_pos, w_pos)``). The code's 2-way softmax is a
sigmoid of one logit (DIN keeps the two output units, spec §5.3).

Departure: no user-id feature. The registry builds a model from (config, n_items, max_len),
and under the paper's user split the feature is untrained for every evaluated user anyway
(spec §7.17: "inert", "a useless feature here"). No categories either (our logs have none):
where the code concatenates item and category embeddings, a position is one item embedding.
"""

from __future__ import annotations

from abc import abstractmethod

import torch
import torch.nn.functional as F

from denoiserec.data.batches import Batch
from denoiserec.errors import TrainingError
from denoiserec.models.base import ModelOutput, SequentialRecommender
from denoiserec.nn.losses import Objective
from denoiserec.nn.schedules import TrainingProgress

SCORE_CELLS = 1 << 20  # (row, candidate, position) cells scored at once by score_all


class CTRModel(SequentialRecommender):
    """Base class of the CTR models: a click model of (history, candidate) pairs."""

    task = "ctr"
    causal = False
    window_training = ""
    losses = ("ce",)  # binary cross-entropy of the candidates (check_task names it)
    label_smoothing = False
    window_refusal = ("a CTR model trains on one (history, candidate) sample per user "
                      "(protocol=ctr), not on windows")

    @abstractmethod
    def logits(self, batch: Batch, candidates: torch.Tensor) -> torch.Tensor:
        """(B, C) click log-odds of each row's history with each of its (B, C) candidates."""

    def score_candidates(self, batch: Batch, candidates: torch.Tensor) -> torch.Tensor:
        return self.logits(batch, candidates)

    def score_all(self, batch: Batch) -> torch.Tensor:
        """(B, n_items + 1) log-odds of every item as the candidate, scored in chunks."""
        width = max(1, SCORE_CELLS // max(1, len(batch) * batch.items.shape[1]))
        items = torch.arange(self.n_items + 1, device=batch.items.device)
        return torch.cat([self.logits(batch, chunk.expand(len(batch), -1))
                          for chunk in items[None, :].split(width, dim=1)], dim=1)

    def encode(self, batch: Batch) -> torch.Tensor:
        """(B, L, D) the history's item embeddings (a CTR model has no candidate-free
        representation: the candidate enters its attention or its crosses)."""
        return self.item_embedding(batch.items)

    def item_embeddings(self) -> torch.Tensor:
        return self.item_embedding.weight

    def loss(self, batch: Batch, objective: Objective,
             progress: TrainingProgress) -> ModelOutput:
        """Binary cross-entropy of the positive (label 1) and its paired negatives (label 0);
        ``per_sample``: each row's mean over its candidates (see the module docstring)."""
        if batch.negatives is None or batch.instances != "prefix":
            raise TrainingError(f"{self.name} trains on (history, candidate, label) samples: "
                                "use protocol=ctr")
        candidates = torch.cat([batch.targets[:, None],
                                batch.negatives.reshape(len(batch), -1)], dim=1)
        logits = self.logits(batch, candidates)
        labels = torch.zeros_like(logits)
        labels[:, 0] = 1.0
        per_sample = F.binary_cross_entropy_with_logits(logits, labels, reduction="none").mean(1)
        loss = per_sample.mean()
        return ModelOutput(loss=loss, parts={"rec": float(loss.detach())}, per_sample=per_sample)


def padded_history(batch: Batch, max_len: int) -> torch.Tensor:
    """(B, max_len) the history right-padded to ``max_len``: position n is one field (DCN,
    Wide&Deep treat every history slot as a sparse field, spec §5.1)."""
    return F.pad(batch.items, (0, max_len - batch.items.shape[1]))
