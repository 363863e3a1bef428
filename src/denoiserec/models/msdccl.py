"""MSDCCL: Multi-level Sequence Denoising with Cross-signal Contrastive Learning.

Zhu, Li, Liu, Luo, WSDM 2024 (arXiv:2404.13878); reference code GitHub ``lalunex/MSDCCL``
(RecBole 1.0.1), specified in ``docs/specs/msdccl.md`` ("spec"). Our copy of the paper has no
equation numbers, so comments cite the paper's sections and the spec's.

Paper order: a user-interest extractor (§4.2: Caser-style short-term convolution + causal
Transformer long-term encoder, fused) scores every item clean/noise (AttnReadout, §4.3);
**soft** denoising re-weights the item embeddings by the clean probability and feeds a backbone
(BERT4Rec by default) whose representation alone predicts, trained with CE; **hard** denoising
samples keep/drop with a Gumbel-softmax gate and trains a second causal Transformer on the kept
items with BPR; a cross-signal contrastive loss (§4.3.3) pulls the soft representation towards
kept items and away from dropped ones; an S-shaped curriculum (§4.5) leaves each batch's
hardest samples out of the CE early on. ``L = L_rec(curriculum) + lambda * (L_bpr + L_cl)``.
Deviations, as "reference does X (spec §N) -> we do Y, because Z":

* Gate: Gumbel noise on *probabilities*, a near coin flip (§2.5, §7.3) -> on log-probabilities,
  so the gate follows the scorer. Straight-through, forward exactly 0/1
  (``hard + (soft - soft.detach())``). Evaluation still samples (§2.5) -> never: keep = argmax,
  so ``hard_keep`` is deterministic.
* Hard branch gathers ids only, BPR never reaches the scorer (§7.4) -> the compacted embeddings
  are multiplied by their keep values (exactly 1 forward), so BPR gradients pass the gate
  (``hard_keep_gradient``). An empty row keeps its oldest item (§7.9) -> its most recent.
* Short-term window: target in an extra slot in training, a zero prepended at evaluation
  (§2.2a, §7.1-2: label leakage, one-slot shift) -> the m most recent real items, right-aligned,
  left zero-padded, the same in training and evaluation; no target reaches a scored
  representation (so "target-aware" names nothing here).
* Soft weights: a second softmax over all L positions, padding included, gives ~1/L (§2.3,
  §7.5) -> one normalisation, ``w_i = pi_i * n / sum_j pi_j`` over the n real items (mean 1,
  computed as ``n * softmax(log pi)``: finite gradients even when every pi underflows;
  ``soft_weight_norm=none``: ``w_i = pi_i``), so the weights act.
* Temperatures decay compounding per 40 batches, at their floors after 360/720 batches (§4.3,
  §7.6) -> exponential in the global step, at the floor after ``anneal_epochs`` epochs (the
  start value holds in epoch 0; ``nn.schedules.TemperatureSchedule``);
  ``temperature_annealing=reference`` reproduces the reference. Gumbel floor 1e-3 -> 0.1: the
  straight-through gradient scales as 1/tau and is zero or spiky at 1e-3.
* LR stepped per epoch, lr * (T - e) / T, no warm-up (§4.2) -> the trainer's per-batch warm-up.
* RecBole's sampler -> ``uniform_negatives`` (one per instance, redrawn when equal to the target)
  unless ``train.loss=bpr`` gives some (the soft term is then BPR too). BPR is -logsigmoid, not
  -log(1e-10 + sigmoid). Window, compaction and curriculum are vectorised (§7.16-17).
* Not implemented: ``train_set_ratio`` (always 1), pre-trained embeddings, the cosine
  diagnostics; no unused [MASK] row or Cloze objective (the reference never calls them).
* The backbone is the registered model's own encoder (``model.backbone``: its settings).
* L_cl's candidates are the scoring item table (§4.3.3) -> detached
  (``contrastive_item_gradient``): L_cl shapes r_soft and the gate, not the output embeddings
  (with our scorer-following gate it turned the gate's drops into a blacklist of items).
* Dead levels (benchmarks/RECORD.md §3): with L_cl at the gate the reference keeps everything
  within ~5 batches, without it drops nearly all; its log pi saturates to exactly 0 by batch 20,
  so the soft weights go uniform. Ours: the gate's level pinned (``gate``: a fixed drop ratio by
  default, measured best; or centred, or a keep prior), the margin bounded (``margin_bound``),
  the weights scale the item embeddings themselves (the backbone's input scale)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from denoiserec.config import check_choice, check_range
from denoiserec.data.batches import Batch
from denoiserec.models.base import ModelOutput, SequentialRecommender
from denoiserec.models.bert4rec import BERT4RecConfig
from denoiserec.models.denoiser import Denoising, SoftDenoising, liveness
from denoiserec.models.denoiser_settings import DenoiserSettings
from denoiserec.models.registry import model_class, model_config_class, register
from denoiserec.nn.contrastive import cross_signal_contrastive
from denoiserec.nn.gumbel import (
    centred_gate_logits,
    compact_kept,
    gate_keep,
    keep_most_recent_if_empty,
)
from denoiserec.nn.losses import Objective, bpr, cross_entropy, uniform_negatives
from denoiserec.nn.readout import CleanNoiseReadout
from denoiserec.nn.schedules import (
    CURRICULA,
    TrainingProgress,
    curriculum_drop_rate,
    easiest_mean,
    kept_count,
)
from denoiserec.nn.short_term import CaserConvolution, last_items_window
from denoiserec.nn.transformer import (
    attention_mask,
    init_bert_weights,
    init_xavier_weights,
)

NORMS = ("mean", "none")
SOFT_INPUTS = ("embedding", "projected")
GATES = ("centred", "prior", "ratio", "reference")


@dataclass(frozen=True)
class MSDCCLConfig(DenoiserSettings):
    """MSDCCL hyper-parameters (defaults: the reference run script for ml-100k, spec §5); the
    backbone, own encoders and temperatures are :class:`DenoiserSettings`' (Gumbel floor:
    reference 1e-3, contrastive floor: reference 0.1)."""

    name: str = "msdccl"
    backbone: Any = field(default_factory=lambda: BERT4RecConfig(
        hidden_size=100, inner_size=100, hidden_dropout=0.5, attn_dropout=0.5),
        metadata={"config_class": model_config_class})
    """The soft branch's recommender, a registered model's own settings (``name``: bert4rec, the
    paper's; sasrec; gru4rec). Its embedding width is MSDCCL's width H for every part
    (reference run script: BERT4Rec, H = 100, 2 layers, 2 heads, inner = H, dropout 0.5)."""
    inner_size: int = 2048
    """Feed-forward size of MSDCCL's own encoders (reference 2048: ~94 % of the training MACs
    at H = 64-100, spec §9; 4H costs about a quarter)."""
    att_dropout: float = 0.5
    """``our_att_drop_out``: AttnReadout feature dropout + attention dropout of own encoders."""
    ae_dropout: float = 0.3
    """``our_ae_drop_out``: embedding/hidden dropout of the extractor and own encoders."""
    sequence_last_m: int = 3
    """m: most recent items in the short-term window."""
    n_v: int = 4
    """Vertical convolution filters of the short-term window."""
    n_h: int = 8
    """Horizontal convolution filters per height 1..m."""
    soft_weight_norm: str = "mean"
    """Soft weights from pi: mean = pi * n / sum(pi) over the n real items | none = pi."""
    soft_weighting: bool = True
    """False: every weight is 1 (alpha = 1; with loss_lambda = 0 the spec §8 control)."""
    soft_input: str = "embedding"
    """Weighted before the backbone: embedding = item embeddings (paper; the backbone's input
    scale) | projected = W_v LN(e) (reference: ~49x the positions' norm)."""
    margin_bound: float = 3.0
    """Clean-minus-noise logit squashed to bound * tanh(m / bound): probabilities within
    [0.047, 0.953] at 3, never saturated; 0 = unbounded (reference)."""
    curriculum: str = "s-shaped"
    """Drop-rate curve of the CE curriculum: s-shaped (paper) | linear | none."""
    curriculum_epochs: int = 10
    """Epochs over which the drop rate falls to 0 (``curriculum_learn_epoch``)."""
    sigmoid_extent: float = 5.0
    """S-shaped curve over linspace(-extent, extent, curriculum_epochs)."""
    max_drop_rate: float = 0.2
    """Largest fraction of a batch's highest CE losses left out (epoch 0)."""
    loss_lambda: float = 1.0
    """lambda: weight of L_bpr + L_cl (``reweight_loss_lambda``)."""
    use_hard_branch: bool = True
    """Ablation: False removes the hard encoder and its BPR loss (use_contrastive: L_cl)."""
    use_contrastive: bool = True
    hard_keep_gradient: bool = True
    """Let BPR reach the scorer through the straight-through keep values (reference: no)."""
    gate: str = "ratio"
    """Level of the hard gate: ratio = drop each row's gate_drop_ratio lowest | centred = keep
    logit minus its row mean, + gate_bias | prior = penalty pulling the mean keep probability
    to keep_prior | reference = as the scorer says (collapses). RECORD.md §6.1 measures all."""
    gate_bias: float = 1.0
    """centred: logit added after centring (0 keeps about half of each row, 1 about 70 %)."""
    keep_prior: float = 0.8
    """prior: target mean keep probability."""
    keep_prior_weight: float = 1.0
    """prior: weight of the squared deviation from keep_prior."""
    gate_drop_ratio: float = 0.2
    """ratio: share of each row's real items dropped (floor; at least one kept)."""
    contrastive_gate_gradient: bool = True
    """Let L_cl reach the scorer through the straight-through keep mask (reference: yes)."""
    contrastive_item_gradient: bool = False
    """Let L_cl move the item table, the one that scores (reference: yes). With a gate that
    follows the scorer the same items are negatives in nearly every history, and L_cl pushed
    them away from every user: a third of ml-100k's items became unrecommendable (RESULTS
    §1.5, audit F1)."""
    initializer_range: float = 0.02
    """Std of the N(0, std) init of the shared item table."""

    def __post_init__(self) -> None:
        super().__post_init__()
        check_choice("model.curriculum", self.curriculum, CURRICULA)
        check_choice("model.soft_weight_norm", self.soft_weight_norm, NORMS)
        check_choice("model.soft_input", self.soft_input, SOFT_INPUTS)
        check_choice("model.gate", self.gate, GATES)
        check_range("model.margin_bound", self.margin_bound, 0)
        check_range("model.keep_prior", self.keep_prior, 0, 1, low_open=True, high_open=True)
        check_range("model.keep_prior_weight", self.keep_prior_weight, 0)
        check_range("model.gate_drop_ratio", self.gate_drop_ratio, 0, 1, high_open=True)
        for key in ("sequence_last_m", "n_v", "n_h", "curriculum_epochs"):
            check_range(f"model.{key}", getattr(self, key), 1)
        for key in ("att_dropout", "ae_dropout", "max_drop_rate"):
            check_range(f"model.{key}", getattr(self, key), 0, 1, high_open=True)
        check_range("model.loss_lambda", self.loss_lambda, 0)


def curriculum_shares(losses: torch.Tensor, drop_rate: float) -> torch.Tensor:
    """(B,) per-sample shares of ``easiest_mean(losses, drop_rate)`` (§4.5): a kept sample's
    loss times B / k, 0 for the hardest ones left out, so that their mean is the curriculum's
    term (``ModelOutput.per_sample``)."""
    k = kept_count(losses.shape[0], drop_rate)
    if k >= losses.shape[0]:
        return losses
    easiest = torch.topk(losses, k, largest=False, sorted=False).indices
    kept = torch.zeros_like(losses).index_fill_(0, easiest, 1.0)
    return losses * kept * (losses.shape[0] / k)


@register
class MSDCCL(SequentialRecommender):
    name = "msdccl"
    config_class = MSDCCLConfig
    causal = False
    denoiser = True
    window_training = ""
    window_refusal = ("MSDCCL weighs items by one interest at the last item, and its backbone "
                      "is bidirectional (all-position training would show it every target); "
                      "use train.instances=prefix")
    losses = ("ce", "bpr")  # r_soft's next-item term (Eq. 12); the hard branch is BPR
    label_smoothing = False

    def __init__(self, config: MSDCCLConfig, n_items: int, max_len: int) -> None:
        super().__init__(config, n_items, max_len)
        H, c = config.width, config
        # §4.2 user-interest extractor (MSDCCL-owned modules, reference init)
        self.position_embedding = nn.Embedding(max_len, H)  # long-term and hard encoders
        self.norm = nn.LayerNorm(H)
        self.dropout = nn.Dropout(c.ae_dropout)
        self.short_term = CaserConvolution(c.sequence_last_m, H, c.n_v, c.n_h, c.ae_dropout)
        self.long_encoder = c.own_encoder(c.ae_dropout, c.att_dropout)  # long-term
        self.interest_map = nn.Linear(H, H, bias=False)  # W_m, shared by short and long
        self.interest_fusion = nn.Linear(H, H)  # W_f
        # §4.3 soft denoising scorer and §4.3.3 hard-branch encoder
        self.readout = CleanNoiseReadout(H, c.att_dropout, c.margin_bound,
                                         values=c.soft_input == "projected")
        self.hard_encoder = (c.own_encoder(c.ae_dropout, c.att_dropout) if c.use_hard_branch
                             else None)
        self.apply(init_xavier_weights)  # the reference init (spec §2.0)
        # shared item table and backbone, with the backbone's N(0, 0.02) init
        self.item_embedding = nn.Embedding(n_items + 1, H, padding_idx=0)
        init_bert_weights(self.item_embedding, c.initializer_range)
        self.backbone = model_class(c.backbone.name).build_encoder(c.backbone, max_len)
        self.backbone.reset_parameters()  # the registered backbone's own encoder and init
        self.temperatures = c.temperature_schedule()

    # -- §4.2 user-interest extractor --------------------------------------------------------
    def _with_positions(self, embeddings: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """LN(E + P) -> dropout -> mask: input of the long-term and hard encoders."""
        positions = self.position_embedding.weight[: embeddings.shape[1]]
        return self.dropout(self.norm(embeddings + positions[None])) * mask

    def short_term_interest(self, items: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """(B, H) s_short from the m most recent items (never the target)."""
        window = last_items_window(items, lengths, self.config.sequence_last_m)  # (B, m)
        x = self.dropout(self.item_embedding(window)) * (window > 0)[..., None]
        return self.short_term(x)

    def user_interest(self, items: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """(B, H) u = W_f relu(W_m s_short + W_m s_long) + b_f."""
        mask = (items > 0)[..., None].float()
        x = self._with_positions(self.item_embedding(items), mask)
        long_term = self.long_encoder(x, attention_mask(items, causal=True),
                                      query=lengths - 1)  # (B, H)
        short_term = self.short_term_interest(items, lengths)
        return self.interest_fusion(F.relu(self.interest_map(short_term)
                                           + self.interest_map(long_term)))

    # -- §4.3 soft denoising -----------------------------------------------------------------
    def soft_denoise(self, batch: Batch) -> SoftDenoising:
        """Clean/noise log-probabilities, soft weights and the re-weighted embeddings."""
        items = batch.items
        mask = (items > 0)[..., None].float()  # (B, L, 1)
        interest = self.user_interest(items, batch.lengths)
        embeddings = self.item_embedding(items)
        log_probs, values = self.readout(embeddings, interest, mask)
        real, c = mask[..., 0], self.config
        if not c.soft_weighting:  # alpha = 1: the control
            weights = real
        elif c.soft_weight_norm == "mean":  # n * softmax(log pi): stable if all pi -> 0
            log_clean = log_probs[..., 0].masked_fill(real == 0, torch.finfo(real.dtype).min)
            weights = log_clean.softmax(1) * real * real.sum(1, keepdim=True)
        else:
            weights = log_probs[..., 0].exp() * real  # pi_i, 0 on padding
        scaled = embeddings if c.soft_input == "embedding" else values
        return SoftDenoising(log_probs=log_probs, weights=weights,
                             embeddings=weights[..., None] * scaled)

    @property
    def scorer_used(self) -> bool:
        """False for the spec §8 control (alpha = 1, no hard branch, no L_cl, no prior): the
        scorer's output reaches no loss and no prediction, so it is not computed."""
        c = self.config
        return c.soft_weighting or c.use_hard_branch or c.use_contrastive or c.gate == "prior"

    def backbone_inputs(self, batch: Batch) -> torch.Tensor:
        """(B, L, H) the soft-denoised embeddings (the item embeddings themselves when every
        weight is 1 and nothing else reads the scorer: the same values, without its cost)."""
        if self.scorer_used:
            return self.soft_denoise(batch).embeddings
        return self.item_embedding(batch.items)

    def encode(self, batch: Batch) -> torch.Tensor:
        """(B, L, H) backbone output over the soft-denoised sequence."""
        return self.backbone(self.backbone_inputs(batch), batch.items)

    def sequence_representation(self, batch: Batch) -> torch.Tensor:
        """(B, H) r_soft: the backbone at the last real item; it alone predicts."""
        return self.backbone(self.backbone_inputs(batch), batch.items, batch.lengths - 1)

    def item_embeddings(self) -> torch.Tensor:
        return self.item_embedding.weight

    # -- §4.3.3 hard denoising ---------------------------------------------------------------
    def hard_keep(self, batch: Batch, log_probs: torch.Tensor | None = None,
                  sample: bool | None = None, tau: float | None = None) -> torch.Tensor:
        """(B, L) keep mask, exactly 0/1 (0 on padding), carrying the straight-through
        gradient: sampled in training (unless ``sample=False``), deterministic in evaluation;
        a row keeping nothing keeps its most recent item. Dropped = real items not kept.
        ``tau``: the Gumbel temperature (it shapes the gradient only; default the start
        value)."""
        if log_probs is None:
            log_probs = self.soft_denoise(batch).log_probs
        sample = self.training if sample is None else sample
        c, mask = self.config, (batch.items > 0).to(log_probs.dtype)
        if c.gate == "centred":  # keep/drop relative to the row's mean relevance
            log_probs = centred_gate_logits(log_probs, mask, c.gate_bias)
        ratio = c.gate_drop_ratio if c.gate == "ratio" else None
        tau = self.temperatures.start.gumbel if tau is None else tau
        keep = gate_keep(log_probs, mask, tau, sample, ratio)
        return keep_most_recent_if_empty(keep, batch.lengths)

    def denoising(self, batch: Batch) -> Denoising:
        """Both levels' judgement of ``batch`` (the gate sampled in training only)."""
        soft = self.soft_denoise(batch)
        keep = self.hard_keep(batch, soft.log_probs)
        return Denoising(log_probs=soft.log_probs, weights=soft.weights, keep=keep)

    def noise_scores(self, batch: Batch) -> torch.Tensor:
        """(B, L) 1 - clean probability in [0, 1], 0 on padding."""
        noise = self.soft_denoise(batch).log_probs[..., 1].exp()
        return noise * (batch.items > 0)

    def hard_representation(self, items: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        """(B, H) r_hard: the kept items, compacted, through the hard-branch encoder."""
        compacted, lengths, order = compact_kept(items, keep)
        valid = (compacted > 0)[..., None].float()
        embeddings = self.item_embedding(compacted)
        if self.config.hard_keep_gradient:  # keep values are exactly 1 here in the forward
            embeddings = embeddings * keep.gather(1, order)[..., None]
        x = self._with_positions(embeddings, valid)
        return self.hard_encoder(x, attention_mask(compacted, causal=True), query=lengths - 1)

    # -- training objective ------------------------------------------------------------------
    def loss(self, batch: Batch, objective: Objective,
             progress: TrainingProgress) -> ModelOutput:
        if batch.instances != "prefix":
            raise ValueError("MSDCCL trains on prefix instances only (train.instances=prefix)")
        c, targets, items = self.config, batch.targets, self.item_embeddings()
        temperatures = self.temperatures.at(progress)
        soft = self.soft_denoise(batch) if self.scorer_used else None  # None: the control
        embeddings = self.item_embedding(batch.items) if soft is None else soft.embeddings
        representation = self.backbone(embeddings, batch.items, batch.lengths - 1)  # r_soft
        negatives = batch.negatives
        if negatives is None:  # the trainer samples only for train.loss=bpr
            negatives = uniform_negatives(targets, self.n_items, 1)
        if objective.kind == "bpr":
            per_sample = bpr(representation, items, targets, negatives, reduction="none")
        else:
            per_sample = cross_entropy(representation, items, targets, objective.label_smoothing,
                                       reduction="none")
        rec, shares = self.curriculum(per_sample, progress.epoch)
        total, parts = rec, {"rec": float(rec.detach())}
        if soft is None:  # alpha = 1, lambda = 0: the backbone on the curriculum's term alone
            return ModelOutput(loss=total, parts=parts, per_sample=shares)
        keep = self.hard_keep(batch, soft.log_probs, sample=True, tau=temperatures.gumbel)
        parts.update(liveness(Denoising(soft.log_probs, soft.weights, keep), batch.items > 0,
                              c.margin_bound))
        if c.gate == "prior":  # pull the mean keep probability to keep_prior
            clean = soft.log_probs[..., 0].exp()[batch.items > 0].mean()
            prior = c.keep_prior_weight * (clean - c.keep_prior) ** 2
            total = total + prior
            parts["prior"] = float(prior.detach())
        if c.use_hard_branch:
            hard = bpr(self.hard_representation(batch.items, keep), items, targets, negatives)
            total = total + c.loss_lambda * hard
            parts["bpr"] = float(hard.detach())
        if c.use_contrastive:
            labels = keep if c.contrastive_gate_gradient else keep.detach()
            candidates = self.item_embedding(batch.items)
            if not c.contrastive_item_gradient:
                candidates = candidates.detach()
            contrastive = cross_signal_contrastive(
                representation, candidates, labels, batch.items > 0,
                temperatures.contrastive).mean()
            total = total + c.loss_lambda * contrastive
            parts["cl"] = float(contrastive.detach())
        return ModelOutput(loss=total, parts=parts, per_sample=shares)

    def curriculum(self, per_sample: torch.Tensor,
                   epoch: int) -> tuple[torch.Tensor, torch.Tensor]:
        """§4.5: the mean over the easiest (1 - d_e) of the batch in ``epoch``, and each
        sample's share."""
        c = self.config
        drop = curriculum_drop_rate(epoch, c.curriculum, c.curriculum_epochs,
                                    c.sigmoid_extent, c.max_drop_rate)
        return easiest_mean(per_sample, drop), curriculum_shares(per_sample, drop)
