"""ATJT: per-sample weights of any recommender from a noise-recognition model trained jointly.

Liu et al., "Enhancing Recommendation with Denoising Auxiliary Task", JCST 2024; reference code
GitHub ``psliu11/ATJT``; specified in ``docs/specs/atjt.md`` ("spec"). ATJT is a way to train,
not a model: with ``train.reweight=atjt`` the one trainer hands every batch's
``ModelOutput.per_sample`` to :class:`AtjtReweighting`, which replaces the recommendation term
(their mean) by ``L_R = sum_i w_i l_i / sum_i w_i`` and adds ``alpha * L_D``:

* **noise model** g (§3.1, ``train/atjt_model.py``): attention MLP over the history against
  the target, SUM pooling of raw scores, output MLP over [user; pooled; target], sigmoid;
  w = g(x) = P(original) (§3.3);
* **artificial noise** (§3.2): a share of every noise batch gets ``replaced`` history items
  replaced by foreign items (:func:`corrupt`), label 1 = original, 0 = replaced;
* **groups** (§1.5, §4.5): users are split into N groups; group n's sequences are weighted by
  its own noise model g_n (the original for n = 0, fresh duplicates for the others: the "role
  swap"), and g_n's L_D is computed on noise batches of the *other* N - 1 groups only, so no
  model weights a sequence it was trained to call clean. Recommender batch i is paired with
  batch i of each other group's own shuffled order (wrapping), L_D averaged over the N - 1;
* **joint loss** (§4.1-4.2): ``w`` is not detached, so L_R's gradient reaches g:
  dL_R/dw_i = (l_i - L_R) / sum w, which lowers the weight of above-mean losses.

Ablations (§4.4, ``train.atjt.variant``): ``atjt`` (joint); ``wat`` (no L_D; L_R - 0.04 mean w^2,
the code's ``l2_model_cross_entropy``); ``dnr`` (w detached: g learns from L_D only).

Where we depart from the reference code, and why:

* Noise positions: one offset per batch counted from the end (so on 5-core data only the 4
  most recent slots were ever replaced, §3.2, §7.19) -> every real position is eligible, drawn
  per row (``noise.online.replace_items``); replacement items are foreign to the row and never
  its target; seeded by (seed, epoch, step, group).
* The N = 2 phases run sequentially in the code (4 epochs on half B, then 4 on A, §1.5) and
  pairs rely on index arithmetic (§7.21) -> all N groups train in every epoch of the one loop
  (each with its own noise model: the roles are swapped at once), pairs are built explicitly.
* DNR's pre-training length is unknown (§4.4) -> ``warmup_epochs``: epochs in which the
  recommender trains unweighted while the noise models learn L_D (any variant).
* No categories or side features in our logs: a position is its item embedding, 16 wide
  (the code's item 8 + category 8), so the dense size is the code's 29,123 (§3.1).
* Adagrad lr 0.023 for g1, 0.025 for g2 -> one ``lr``; BCE on logits, not clamped outputs.
* The query item of a row: its target (prefix instances), its last target (window mode), none
  (padding, a zero vector) for Cloze windows, which have no target. Noise batches are always
  prefix instances (history + target).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from denoiserec.data.batches import Batch, Batcher
from denoiserec.errors import ConfigError, TrainingError
from denoiserec.models.base import ModelOutput
from denoiserec.nn.schedules import TrainingProgress
from denoiserec.noise.online import replace_items
from denoiserec.protocols import Split
from denoiserec.train.atjt_model import ATJTConfig, AtjtNoiseModel, query_items


# -- §3.2 artificial noise --------------------------------------------------------------------
@dataclass(frozen=True)
class NoiseBatch:
    """A noise batch (spec §3.2): prefix rows of one group, a share of them corrupted.

    Attributes:
        items: (B, L) history items after replacement; lengths: (B,); query: (B,) targets;
        users: (B,); labels: (B,) float, 1 = original, 0 = items replaced (spec §3.3).
    """

    items: torch.Tensor
    lengths: torch.Tensor
    query: torch.Tensor
    users: torch.Tensor
    labels: torch.Tensor


def corrupt(batch: Batch, share: float, count: int, n_items: int,
            generator: torch.Generator) -> NoiseBatch:
    """floor(share * B) rows, drawn at random, get ``count`` items replaced at uniformly random
    real positions by items foreign to the row and unequal to its target; the rest are
    untouched (spec §3.2, every position eligible)."""
    size = len(batch)
    order = torch.randperm(size, device=batch.items.device, generator=generator)
    noisy = torch.zeros(size, dtype=torch.bool, device=batch.items.device)
    noisy[order[:math.floor(share * size + 1e-9)]] = True
    rows = replace_items(batch.items, batch.lengths, count, n_items, rows=noisy,
                         exclude=batch.targets, generator=generator)
    return NoiseBatch(items=rows.items, lengths=batch.lengths, query=batch.targets,
                      users=batch.users, labels=(~noisy).float())


# -- §1.5 groups, §4.1 joint loss -------------------------------------------------------------
def user_groups(n_users: int, n_groups: int, seed: int) -> torch.Tensor:
    """(n_users,) group of every user: a seeded permutation dealt round-robin, so groups are
    disjoint and their sizes differ by at most one (spec §1.5)."""
    order = np.random.default_rng([seed, 18]).permutation(n_users)
    groups = np.empty(n_users, dtype=np.int64)
    groups[order] = np.arange(n_users) % n_groups
    return torch.as_tensor(groups)


def weighted_loss(per_sample: torch.Tensor, log_weights: torch.Tensor) -> torch.Tensor:
    """L_R = sum_i w_i l_i / sum_i w_i (the code's self-normalised form, spec §4.2, §7.1),
    from log w as softmax(log w) . l: the same value and gradient, but weights that all underflow
    to 0 in float32 (WAT drives them there, RECORD.md §10.4) give no 0 / 0."""
    return torch.softmax(log_weights, dim=0) @ per_sample


def mix_seed(*values: int) -> int:
    """A 63-bit seed from several integers."""
    return int(np.random.SeedSequence(list(values)).generate_state(2, np.uint64)[0] >> 1)


class NoReweighting:
    """``train.reweight=none``: every sample weighs 1; nothing to train or save."""

    def reweight(self, batch: Batch, output: ModelOutput,
                 progress: TrainingProgress) -> ModelOutput:
        return output

    def step(self) -> None:  # nothing to update
        pass

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:  # nothing to restore
        pass


@dataclass
class Detection:
    """L_D of one step (spec §3.3, §4.5): the sum over models n of L_D(g_n), each the mean BCE
    over its N - 1 noise batches; the mean w on their corrupted / original rows (Table 5)."""

    loss: torch.Tensor
    noisy_weight: float
    clean_weight: float


class AtjtReweighting:
    """The trainer's ATJT hook: :meth:`reweight` builds the joint loss of a batch, :meth:`step`
    updates the noise models (their own Adagrad, outside the recommender's optimiser and
    clipping), :meth:`state_dict` goes into ``last.pt`` so that a resumed run is exact.

    Args:
        config: ``train.atjt``. split: the training split (its prefix instances make the noise
        batches). batcher: the trainer's training batcher. batch_size: rows per noise batch
        (at most a group's instances). seed: ``train.seed``. device: the trainer's device.
    """

    def __init__(self, config: ATJTConfig, split: Split, batcher: Batcher, batch_size: int,
                 seed: int, device: torch.device) -> None:
        self.config, self.batcher, self.seed, self.device = config, batcher, seed, device
        self.n_items = split.log.n_items
        self.groups = user_groups(split.log.n_users, config.groups, seed).to(device)
        self.users = torch.as_tensor(split.train_users, device=device)
        self.targets = torch.as_tensor(split.train_targets, device=device)
        instance_group = self.groups[self.users]
        self.pools = [torch.nonzero(instance_group == g).squeeze(1) for g in range(config.groups)]
        empty = [g for g, pool in enumerate(self.pools) if len(pool) == 0]
        if empty:
            raise ConfigError(f"train.atjt.groups={config.groups}: group {empty[0]} has no "
                              f"training instances ({split.log.n_users} users); use fewer")
        self.batch_size = batch_size
        with torch.random.fork_rng(devices=[]):  # g's init leaves the recommender's RNG alone
            torch.manual_seed(mix_seed(seed, 18))
            self.models = nn.ModuleList(  # g_0 and its N - 1 duplicates (spec §1.5)
                AtjtNoiseModel(config, self.n_items, split.log.n_users)
                for _ in range(config.groups)).to(device)
        self.optimizer = torch.optim.Adagrad(self.models.parameters(), lr=config.lr,
                                             weight_decay=config.weight_decay)
        self._orders: tuple[int, list[torch.Tensor]] = (-1, [])

    # -- noise batches (spec §1.5, §3.2) ------------------------------------------------------
    def group_order(self, group: int, epoch: int) -> torch.Tensor:
        """The instances of ``group`` in the epoch's shuffled order (seeded by epoch)."""
        if self._orders[0] != epoch:
            orders = []
            for g, pool in enumerate(self.pools):
                generator = torch.Generator().manual_seed(mix_seed(self.seed, epoch, g))
                orders.append(pool[torch.randperm(len(pool), generator=generator).to(
                    self.device)])
            self._orders = (epoch, orders)
        return self._orders[1][group]

    def noise_batch(self, group: int, epoch: int, step: int) -> NoiseBatch:
        """Noise batch ``step`` of ``group``: the step-th slice of its order (wrapping), with
        a share of the rows corrupted, seeded by (seed, epoch, step, group)."""
        order = self.group_order(group, epoch)
        size = min(self.batch_size, len(order))
        index = order[(step * size + torch.arange(size, device=self.device)) % len(order)]
        batch = self.batcher.prefix(self.users[index], self.targets[index])
        generator = torch.Generator(device=self.device)
        generator.manual_seed(mix_seed(self.seed, epoch, step, group))
        return corrupt(batch, self.config.noise_share, self.config.replaced, self.n_items,
                       generator)

    def detection(self, epoch: int, step: int) -> Detection:
        """L_D of every model g_n on batch ``step`` of each other group (spec §4.5)."""
        per_model: list[list[torch.Tensor]] = [[] for _ in self.models]
        noisy, clean = [], []
        for group in range(len(self.models)):
            noise = self.noise_batch(group, epoch, step)
            for n, model in enumerate(self.models):
                if n == group:  # g_n never learns from the group it weights
                    continue
                logits = model(noise.items, noise.lengths, noise.query, noise.users)
                per_model[n].append(F.binary_cross_entropy_with_logits(logits, noise.labels))
                weights = torch.sigmoid(logits.detach())
                noisy.append(weights[noise.labels == 0])
                clean.append(weights[noise.labels == 1])
        loss = sum(torch.stack(losses).mean() for losses in per_model)  # 1/(N-1) per model
        return Detection(loss=loss, noisy_weight=float(torch.cat(noisy).mean()),
                         clean_weight=float(torch.cat(clean).mean()))

    # -- weights and the joint loss (spec §4.1) -----------------------------------------------
    def log_weights(self, batch: Batch) -> torch.Tensor:
        """(B,) log w of every row, from the noise model of the row's user's group (train
        mode, dropout on, not detached: spec §3.1, §4.2)."""
        group = self.groups[batch.users]
        query = query_items(batch)
        log_weights = torch.zeros(len(batch), device=batch.items.device)
        for n, model in enumerate(self.models):
            rows = torch.nonzero(group == n).squeeze(1)
            if len(rows):
                logits = model(batch.items[rows], batch.lengths[rows], query[rows],
                               batch.users[rows])
                log_weights = log_weights.index_put((rows,), F.logsigmoid(logits))
        return log_weights

    @torch.no_grad()
    def noise_scores(self, batch: Batch) -> torch.Tensor:
        """(B,) 1 - w per sequence (evaluation mode: no dropout), higher = more likely noisy;
        the per-sequence noise scores of the noise lab."""
        self.models.eval()
        try:
            return 1.0 - self.log_weights(batch).exp()
        finally:
            self.models.train()

    def reweight(self, batch: Batch, output: ModelOutput,
                 progress: TrainingProgress) -> ModelOutput:
        """The joint loss: ``output.loss`` with ``mean(per_sample)`` replaced by L_R, plus
        alpha L_D (``atjt``, ``dnr``) or minus wat_l2 mean w^2 (``wat``); the noise batches of
        L_D are those of ``progress``'s epoch and batch."""
        if output.per_sample is None:
            raise TrainingError("train.reweight=atjt: this model's loss gives no per-sample "
                                "losses (ModelOutput.per_sample)")
        config, parts = self.config, dict(output.parts)
        self.optimizer.zero_grad(set_to_none=True)
        self.models.train()
        total = output.loss - output.per_sample.mean()
        if progress.epoch < config.warmup_epochs:  # the recommender unweighted, g learns L_D
            log_weights = torch.zeros_like(output.per_sample)
        else:
            log_weights = self.log_weights(batch)
            if config.variant == "dnr":
                log_weights = log_weights.detach()
        rec = weighted_loss(output.per_sample, log_weights)
        total = total + rec
        weights = log_weights.exp()
        parts.update(rec_weighted=float(rec.detach()), w_mean=float(weights.detach().mean()))
        if config.variant == "wat":
            if weights.requires_grad:
                total = total - config.wat_l2 * weights.square().mean()
        else:
            detection = self.detection(progress.epoch, progress.batch)
            total = total + config.alpha * detection.loss
            parts.update(detect=float(detection.loss.detach()) / len(self.models),
                         w_noisy=detection.noisy_weight, w_clean=detection.clean_weight)
        return ModelOutput(loss=total, parts=parts, per_sample=output.per_sample)

    def step(self) -> None:
        """Update the noise models (after the recommender's optimiser step)."""
        self.optimizer.step()

    def state_dict(self) -> dict:
        return {"models": self.models.state_dict(), "optimizer": self.optimizer.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.models.load_state_dict(state["models"])
        self.optimizer.load_state_dict(state["optimizer"])


def make_reweighter(reweight: str, config: ATJTConfig, split: Split, batcher: Batcher,
                    batch_size: int, seed: int,
                    device: torch.device) -> NoReweighting | AtjtReweighting:
    """The trainer's per-sample weighting for ``train.reweight``."""
    if reweight == "atjt":
        return AtjtReweighting(config, split, batcher, batch_size, seed, device)
    return NoReweighting()
