"""END4Rec: Efficient Noise-Decoupling for Multi-Behavior Sequential Recommendation.

Han et al., WWW 2024 (arXiv:2403.17603); reference code ``USTC-StarTeam/End4Rec`` (MindSpore),
specified in ``docs/specs/end4rec.md`` ("spec"). The paper's body could not be read (spec §9);
equation numbers follow the third-party reading the spec cites (Eq. 1-9) and are ours beyond.

Forward, in the paper's order (left-padded to ``max_len`` slots, the most recent item last,
as the reference; the right-padded batch is re-aligned, so padding and batch width change
nothing):

1. behaviour-aware embedding ``E = item + behaviour + position`` (Eq. 1), LN, dropout;
2. Efficient Behavior Sequence Miner (Eq. 2-4): rfft -> frequency-aware fusion (learnable
   complex filter) -> chunked complex MLP -> irfft, residual + LN; compactness regulariser
   ``R`` through the smaller Gram matrix (Eq. 5);
3. Hard Noise Eliminator (Eq. 6-7): keep logit ``p_beh - score(S)`` with behaviour preference
   values (learned, or Poisson), a straight-through gate on log-probabilities,
   ``S_hp = S * m``, ``S_hn = S * (1 - m)``;
4. Soft Noise Filter (Eq. 8): per-behaviour frequency kernels, ``S_sp`` the filtered kept part,
   ``S_sn = S_hp - S_sp`` exactly;
5. prediction from the last slot of ``S_sp`` against the item embeddings (tied, Eq. 9);
6. noise-decoupling contrastive loss, hard and soft triples (Eq. 10-11);
7. guided 4-stage training (§4): encoder, hard, soft, all (``train/stages.py``).

Where the release departs from the paper's intent, we implement the intent (spec §6):

* its FFT goes through NumPy and cuts the gradient (§2.2(d)): torch rfft/irfft, gradients
  flow to the embeddings; it keeps only the real spectrum, so its miner is symmetric in time
  (S[L-1] == S[1], §2.2(b)): the complex spectrum is kept (``nn/fft.ChunkedSpectralMixer``);
* its hard gate is a hard comparison with a constant preference and no Gumbel, so it cannot
  learn (§2.4): a straight-through gate on log-probabilities (``nn/gumbel.py``) with learned
  (or Poisson) behaviour preferences, deterministic at evaluation, its level pinned by
  ``gate_drop_ratio`` (``ratio_keep``, as MSDCCL) and its margin bounded (no saturation);
* its soft filter is a per-token time-domain Dense looped in Python (§2.5): per-behaviour
  frequency kernels, vectorised; the decomposition S_hp = S_sp + S_sn stays exact;
* its contrastive loss on mean-pooled vectors reduces to sign constraints and ignores the
  target (§3.2): ``Q(x) = <mean_t x_t, e_target>``; by linearity the hard triple equals
  ``softplus(Q_hn) + softplus(-Q_hp)`` (the kept part predicts the target, the dropped part
  does not), and the soft triple likewise;
* its regulariser uses the L x L Gram + Cholesky at eps = 1e-3 (§2.3, §6.1.3): the smaller Gram,
  eps = 1 by default;
* staged training freezes the output layer in stages 1-3 and uses one loss throughout (§4):
  stage 1 trains embeddings + miner (+ the tied output) on L_rec + lambda_R R, stage 2 the hard
  eliminator on L_rec + lambda_C CL_hard, stage 3 the soft filter on L_rec + lambda_C CL_soft,
  stage 4 everything on the full loss at ``stage4_lr_scale`` x lr; Adam afresh per stage.
* ``weights`` of :class:`Denoising` are the keep probabilities normalised to mean 1 (the
  level has no per-item soft weights: the soft filter acts on representations).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from denoiserec.config import check_choice, check_range
from denoiserec.data.batches import Batch
from denoiserec.errors import ConfigError
from denoiserec.models.base import ModelOutput, SequentialRecommender, row_shares, target_losses
from denoiserec.models.behaviour import MAX_BEHAVIOURS, behaviour_ids
from denoiserec.models.denoiser import Denoising, liveness
from denoiserec.models.registry import register
from denoiserec.nn.fft import (
    ChunkedSpectralMixer,
    behaviour_filter,
    compactness,
    left_align,
    right_align,
)
from denoiserec.nn.gumbel import ratio_keep
from denoiserec.nn.losses import Objective
from denoiserec.nn.schedules import TrainingProgress, TrainingStage
from denoiserec.nn.transformer import init_bert_weights

PREFERENCES = ("learned", "poisson")
GROUPS = ("encoder", "hard", "soft")


@dataclass(frozen=True)
class END4RecConfig:
    """END4Rec hyper-parameters (spec §2 defaults unless noted)."""

    name: str = "end4rec"
    hidden_size: int = 64
    """d (release 128; 64 as the baselines)."""
    n_blocks: int = 4
    """k: channel chunks of the miner's block-diagonal MLP."""
    frequency_filter: bool = True
    """Frequency-aware fusion: a learnable complex filter per (frequency, channel)."""
    dropout: float = 0.2
    """Dropout on the embedding and the miner output (the release has none)."""
    epsilon: float = 1.0
    """eps of the compactness regulariser (release 1e-3: a 1e6 coefficient, spec §2.3)."""
    reg_weight: float = 0.01
    """lambda_R."""
    contrast_weight: float = 0.1
    """lambda_C."""
    preference: str = "learned"
    """Behaviour preference values p_b: learned | poisson (p = Poisson pmf(lambda; lambda) + 1)."""
    gate_drop_ratio: float = 0.2
    """Share of each row's real items the hard eliminator drops (its pinned level)."""
    gumbel_temperature: float = 1.0
    """Temperature of the gate's straight-through surrogate."""
    margin_bound: float = 3.0
    """Keep margin squashed to bound * tanh(m / bound): log-probabilities never saturate."""
    use_hard: bool = True
    """Ablation: False keeps every item (m = 1)."""
    use_soft: bool = True
    """Ablation: False passes S_hp unfiltered (S_sp = S_hp)."""
    use_contrastive: bool = True
    """Ablation: False drops the contrastive terms."""
    staged: bool = True
    """Guided 4-stage training; False trains everything on the full loss from epoch 0."""
    stage_epochs: tuple[int, ...] = (3, 2, 2)
    """Epochs of stages 1-3 (release run.py); stage 4 runs until training stops."""
    stage4_lr_scale: float = 0.5
    """Learning-rate factor of stage 4 (release 5e-4 after 1e-3)."""
    layer_norm_eps: float = 1e-12
    initializer_range: float = 0.02

    def __post_init__(self) -> None:
        check_choice("model.preference", self.preference, PREFERENCES)
        for key in ("hidden_size", "n_blocks"):
            check_range(f"model.{key}", getattr(self, key), 1)
        if self.hidden_size % self.n_blocks:
            raise ConfigError(f"model.hidden_size ({self.hidden_size}) must be a multiple of "
                              f"model.n_blocks ({self.n_blocks})")
        check_range("model.dropout", self.dropout, 0, 1, high_open=True)
        check_range("model.gate_drop_ratio", self.gate_drop_ratio, 0, 1, high_open=True)
        for key in ("epsilon", "gumbel_temperature", "margin_bound", "stage4_lr_scale"):
            check_range(f"model.{key}", getattr(self, key), 0, low_open=True)
        for key in ("reg_weight", "contrast_weight"):
            check_range(f"model.{key}", getattr(self, key), 0)
        if len(self.stage_epochs) != 3 or min(self.stage_epochs) < 0:
            raise ConfigError(f"model.stage_epochs must be 3 epoch counts >= 0 (stages 1-3); "
                              f"got {list(self.stage_epochs)}")


@dataclass(frozen=True)
class Decomposition:
    """One forward pass (left-aligned, (B, max_len, d) unless noted).

    Attributes:
        s: miner output S; s_hp, s_hn: kept / removed parts; s_sp, s_sn: soft positive /
        negative parts of s_hp; real: (B, max_len) 1 on real slots; margin: (B, max_len)
        bounded keep margin; keep: (B, max_len) 0/1 mask with its straight-through gradient;
        regulariser: scalar R.
    """

    s: torch.Tensor
    s_hp: torch.Tensor
    s_hn: torch.Tensor
    s_sp: torch.Tensor
    s_sn: torch.Tensor
    real: torch.Tensor
    margin: torch.Tensor
    keep: torch.Tensor
    regulariser: torch.Tensor


def ordering_loss(q_clean: torch.Tensor, q_orig: torch.Tensor,
                  q_noise: torch.Tensor) -> torch.Tensor:
    """Eq. 10: ``-log s(Q_clean - Q_orig) - log s(Q_orig - Q_noise)``, mean over the batch."""
    return -(F.logsigmoid(q_clean - q_orig) + F.logsigmoid(q_orig - q_noise)).mean()


@register
class END4Rec(SequentialRecommender):
    name = "end4rec"
    config_class = END4RecConfig
    causal = False
    denoiser = True
    window_training = ""
    window_refusal = ("END4Rec's miner mixes every slot of the window, future ones included: "
                      "use train.instances=prefix")

    def __init__(self, config: END4RecConfig, n_items: int, max_len: int) -> None:
        super().__init__(config, n_items, max_len)
        d, c = config.hidden_size, config
        # Eq. 1: behaviour-aware embedding
        self.item_embedding = nn.Embedding(n_items + 1, d, padding_idx=0)
        self.behaviour_embedding = nn.Embedding(MAX_BEHAVIOURS, d, padding_idx=0)
        self.position_embedding = nn.Embedding(max_len, d)
        self.norm = nn.LayerNorm(d, eps=c.layer_norm_eps)
        self.dropout = nn.Dropout(c.dropout)
        # Eq. 2-4: miner
        self.miner = ChunkedSpectralMixer(max_len, d, c.n_blocks, c.frequency_filter)
        self.miner_norm = nn.LayerNorm(d, eps=c.layer_norm_eps)
        self.out_norm = nn.LayerNorm(d, eps=c.layer_norm_eps)
        # Eq. 6: token scorer and behaviour preference values (raw: Poisson lambda or p_b)
        self.scorer = nn.Linear(d, 1)
        self.preference = nn.Parameter(torch.ones(MAX_BEHAVIOURS))
        # Eq. 8: per-behaviour complex kernels, initialised at the identity filter
        kernels = torch.zeros(MAX_BEHAVIOURS, max_len // 2 + 1, d, 2)
        kernels[..., 0] = 1.0
        self.kernels = nn.Parameter(kernels + 0.02 * torch.randn_like(kernels))
        for module in (self.item_embedding, self.behaviour_embedding, self.position_embedding,
                       self.norm, self.miner_norm, self.out_norm, self.scorer):
            init_bert_weights(module, c.initializer_range)

    # -- stages (train/stages.py) ------------------------------------------------------------
    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        """encoder (embeddings, miner, output norm; the tied output), hard, soft."""
        hard = [self.scorer.weight, self.scorer.bias, self.preference]
        soft = [self.kernels]
        taken = {id(p) for p in hard + soft}
        return {"encoder": [p for p in self.parameters() if id(p) not in taken],
                "hard": hard, "soft": soft}

    def training_stage(self, epoch: int) -> TrainingStage:
        """The stage of ``epoch`` (spec §4 [REC]; 4 throughout when not ``staged``); the
        trainer passes it to ``loss`` in the progress, where it selects the loss terms."""
        c = self.config
        ends = torch.cumsum(torch.tensor(c.stage_epochs), 0).tolist()
        number = 4 if not c.staged else 1 + sum(epoch >= end for end in ends)
        first = 0 if not c.staged or number == 1 else ends[number - 2]
        groups = GROUPS if number == 4 else (GROUPS[number - 1],)
        scale = c.stage4_lr_scale if number == 4 and c.staged else 1.0
        return TrainingStage(number=number, groups=groups, first_epoch=first, lr_scale=scale)

    # -- forward -----------------------------------------------------------------------------
    def preference_values(self) -> torch.Tensor:
        """(MAX_BEHAVIOURS,) p_b: learned, or Poisson pmf(k = lambda; lambda) + 1 (spec §2.4)."""
        if self.config.preference == "learned":
            return self.preference
        lam = F.softplus(self.preference)
        return torch.exp(-lam + lam * torch.log(lam) - torch.lgamma(lam + 1)) + 1

    def decompose(self, batch: Batch, sample: bool | None = None) -> Decomposition:
        c, L = self.config, self.max_len
        behaviours = left_align(behaviour_ids(batch), batch.lengths, L)  # 0 on padding
        real = (behaviours > 0).float()
        items = left_align(batch.items, batch.lengths, L)
        x = (self.item_embedding(items) + self.behaviour_embedding(behaviours)
             + self.position_embedding.weight[None])  # Eq. 1
        x = self.dropout(self.norm(x)) * real[..., None]
        s = self.miner_norm(x + self.dropout(self.miner(x))) * real[..., None]  # Eq. 2-4
        regulariser = compactness(s, c.epsilon).mean()  # Eq. 5
        logit = self.preference_values()[behaviours] - self.scorer(s).squeeze(-1)  # Eq. 6
        margin = c.margin_bound * torch.tanh(logit / c.margin_bound)
        sample = self.training if sample is None else sample
        if c.use_hard:  # Eq. 7: straight-through, deterministic at evaluation
            keep = ratio_keep(margin, real, c.gate_drop_ratio, c.gumbel_temperature, sample)
        else:
            keep = real
        s_hp, s_hn = s * keep[..., None], s * (1 - keep[..., None])
        if c.use_soft:  # Eq. 8: per-behaviour frequency kernels (pads use kernel 0, x = 0)
            s_sp = behaviour_filter(s_hp, behaviours, torch.view_as_complex(self.kernels))
        else:
            s_sp = s_hp
        return Decomposition(s=s, s_hp=s_hp, s_hn=s_hn, s_sp=s_sp, s_sn=s_hp - s_sp, real=real,
                             margin=margin, keep=keep, regulariser=regulariser)

    def readout(self, parts: Decomposition) -> torch.Tensor:
        """(B, d) Eq. 9: the last slot of the soft-positive part (the most recent item)."""
        return self.out_norm(parts.s_sp[:, -1])

    def encode(self, batch: Batch) -> torch.Tensor:
        return right_align(self.decompose(batch).s_sp, batch.lengths, batch.items.shape[1])

    def sequence_representation(self, batch: Batch) -> torch.Tensor:
        return self.readout(self.decompose(batch))

    def item_embeddings(self) -> torch.Tensor:
        return self.item_embedding.weight

    # -- the denoiser contract ---------------------------------------------------------------
    def denoising(self, batch: Batch) -> Denoising:
        """Keep/drop log-probabilities, keep probabilities (mean 1) and the keep mask, (B, L)
        in the batch's right-padded layout."""
        parts = self.decompose(batch)
        return self._judgement(parts, batch)

    def _judgement(self, parts: Decomposition, batch: Batch) -> Denoising:
        width = batch.items.shape[1]
        log_keep = F.logsigmoid(parts.margin)
        log_probs = torch.stack([log_keep, F.logsigmoid(-parts.margin)], -1)
        weights = log_keep.masked_fill(parts.real == 0, -torch.inf).softmax(1)
        weights = weights * parts.real.sum(1, keepdim=True)
        back = lambda t: right_align(t, batch.lengths, width)  # noqa: E731
        return Denoising(log_probs=back(log_probs), weights=back(weights), keep=back(parts.keep))

    def noise_scores(self, batch: Batch) -> torch.Tensor:
        """(B, L) 1 - keep probability in [0, 1], 0 on padding; deterministic."""
        parts = self.decompose(batch, sample=False)
        drop = torch.sigmoid(-parts.margin) * parts.real
        return right_align(drop, batch.lengths, batch.items.shape[1])

    # -- training objective ------------------------------------------------------------------
    def loss(self, batch: Batch, objective: Objective,
             progress: TrainingProgress) -> ModelOutput:
        if batch.instances != "prefix":
            raise ValueError("END4Rec trains on prefix instances only (train.instances=prefix)")
        if progress.stage is None:
            raise ValueError("END4Rec's loss depends on its stage: pass "
                             "model.progress_at(epoch), which carries it")
        c, stage = self.config, progress.stage.number
        parts = self.decompose(batch)
        items = self.item_embeddings()
        losses = target_losses(self.readout(parts), items, batch.targets, objective,
                               batch.negatives)
        per_sample = row_shares(losses, (batch.targets != 0)[:, None])  # for train.reweight
        rec = losses.mean()
        total, logged = rec, {"rec": float(rec.detach())}
        logged.update(liveness(self._judgement(parts, batch), batch.padding_mask))
        if stage in (1, 4) and c.reg_weight > 0:
            total = total + c.reg_weight * parts.regulariser
            logged["reg"] = float(parts.regulariser.detach())
        if c.use_contrastive and c.contrast_weight > 0 and stage != 1:
            target = items[batch.targets]  # (B, d)
            n = parts.real.sum(1, keepdim=True).clamp(min=1)
            def q(x: torch.Tensor) -> torch.Tensor:  # Eq. 10: mean-pooled score of the target
                return (x.sum(1) / n * target).sum(-1)
            cl = torch.zeros((), device=total.device)
            if stage in (2, 4) and c.use_hard:
                cl = cl + ordering_loss(q(parts.s_hp), q(parts.s), q(parts.s_hn))
            if stage in (3, 4) and c.use_soft:
                cl = cl + ordering_loss(q(parts.s_sp), q(parts.s_hp), q(parts.s_sn))
            total = total + c.contrast_weight * cl  # Eq. 11
            logged["cl"] = float(cl.detach())
        return ModelOutput(loss=total, parts=logged, per_sample=per_sample)
