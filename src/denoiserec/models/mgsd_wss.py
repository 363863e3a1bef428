"""MGSD-WSS: Multi-Granularity Sequence Denoising with a Weakly Supervised Signal.

Li, Yang, Zhu, arXiv:2510.10564; reference code GitHub ``lalunex/MGSD-WSS`` (RecBole 1.0.1),
specified in ``docs/specs/mgsd-wss.md`` ("spec"). Our copy of the paper is its abstract: the
comments cite the paper's module names and the spec's sections.

Paper order: the **Multiple Gaussian Kernel Perceptron** maps the sequence (and, in training,
an enhanced copy with inserted items) into one space, and a causal encoder gives G (spec
§2.2); a **noise head** on G gives each item's clean probability, trained on the enhanced copy
against its known labels (**weak supervision**, §3); **item granularity**: a Gumbel keep mask
on the head's log-probabilities, the kept items compacted and encoded, with a noise-weighted
contrastive loss (§2.7, §4.3); **interest granularity**: K prototypes, a per-sequence
interest distribution and a selector, with a noise-weighted contrastive loss (§2.4-2.5, §2.8,
§4.4); the next item is scored by ``u = r_seq + r_item + r_int`` (§2.9), r_seq the registered
backbone's encoder over G. ``L = L_ce + gamma L_ws + zeta L_item + eta L_int`` (§4.5).
Deviations, as "reference does X (spec §N) -> we do Y, because Z":

* Kernels summed into one near-constant gain, then replaced by an MLP (§2.2, §7.3) -> the
  k-dim kernel response kept and mapped (``nn.kernels``); ``perceptron=mlp``: the released MLP.
* **Target leakage** (§2.5, §7.1): the kernels and the selector see the true next item in
  training, the last item at evaluation -> the kernels' anchor is the most recent input item (a
  pseudo-target, alike in training and evaluation) and the selector is conditioned on r_seq, the
  backbone's prediction (a predicted target). The true target enters only the CE and, as an id
  never inserted, the weak supervision (the denoiser contract test checks the CE's input).
* The kernels' cosine on the dropped embeddings (§2.2): the anchor's own similarity is then
  ~0.95 in training and 1 at evaluation, so the exact-match kernel fires at evaluation only
  -> the cosine on the embeddings before dropout, the values still dropped.
* Gumbel on probabilities (§2.3, §7.4) -> on log-probabilities; the item gate's level pinned
  (``gate=ratio``: each row's ``gate_drop_ratio`` least clean items dropped, MSDCCL's fix,
  RECORD.md §6.1), the selector's too (``interest_drop_ratio``); deterministic at evaluation
  (§7.2: the published masks are sampled at test time). The keep values multiply the compacted
  rows (exactly 1 forward), so the item encoder's loss reaches the gate (§7.5).
* Weak supervision (§3, §7.7-7.8): ids from the whole catalogue, padding labelled noise, MSE of
  probabilities, the noisy row kept at n + T_n -> ``noise.online.insert_items`` (never the row's
  items or target), truncated to its most recent n, padding unlabelled, BCE on the bounded
  logit over every real item. ``ws_weight=0`` skips it.
* L_item's weights (the head's clean probabilities) are detached: L_item falls as *any* weight
  rises, so its gradient pushed every clean probability to 1 and overrode the weak supervision
  (the head's BCE rose from 0.59 to 0.82). The keep mask's straight-through path did the same:
  the paper trains the head with every loss -> only the weak supervision trains it
  (``head_gradient=weak``; detection AUC 0.738 -> 0.875, RECORD.md §8.4; ``all``: the paper's).
* Interest loss weights negatives by w like positives (§4.4, §7.6) -> by 1 - w, like the item
  loss (``interest_negative_weights=same``: the published rule).
* Prototypes N(0, 1), ~50x the item embeddings (§7.11): kept (``prototype_std``), because
  what U meets is r_seq and r_item in u, LayerNorm outputs of that very scale, and G in the
  interest affinity; never an item embedding. One
  positional table (§7.10): the backbone's, added once to MGSD's own encoders' inputs; G then
  enters the backbone without a second one. FFN width a setting (``inner_size``; reference 2048,
  ~75 % of the MACs, §9). Temperatures annealed per batch to their floors after
  ``anneal_epochs`` (§5); the LR schedule is the trainer's. Vectorised; no NaN checks or host
  syncs in the forward (§7.16-7.17).
* Dropout 0.1 in MGSD's own modules (reference); the BERT4Rec backbone 0.2 (the BERT4Rec
  baseline's; reference 0.5, which cost MSDCCL quality, RECORD.md §6).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from denoiserec.config import check_choice, check_range
from denoiserec.data.batches import Batch
from denoiserec.errors import ConfigError
from denoiserec.models.base import ModelOutput, SequentialRecommender, gather_last
from denoiserec.models.bert4rec import BERT4RecConfig
from denoiserec.models.denoiser import Denoising, liveness, weight_entropy
from denoiserec.models.denoiser_settings import DenoiserSettings
from denoiserec.models.registry import model_class, model_config_class, register
from denoiserec.nn.contrastive import noise_weighted_contrastive
from denoiserec.nn.gumbel import compact_kept, gate_keep, keep_most_recent_if_empty
from denoiserec.nn.kernels import GaussianKernelPerceptron, PerceptronMLP
from denoiserec.nn.losses import Objective, bpr, cross_entropy
from denoiserec.nn.readout import CleanNoiseReadout, bounded_log_probs
from denoiserec.nn.schedules import (
    Temperatures,
    TrainingProgress,
)
from denoiserec.nn.transformer import attention_mask, init_bert_weights
from denoiserec.noise.online import insert_items

PERCEPTRONS = ("kernels", "mlp")
GATES = ("ratio", "sampled")
HEAD_GRADIENTS = ("all", "weak")
INTEREST_NEGATIVES = ("complement", "same")


@dataclass(frozen=True)
class MGSDWSSConfig(DenoiserSettings):
    """MGSD-WSS hyper-parameters (defaults: the reference's, spec §6.1, unless stated); the
    backbone, own encoders (reference FFN 2048, ~75 % of the training MACs, spec §9) and
    temperatures are :class:`DenoiserSettings`'."""

    name: str = "mgsd-wss"
    backbone: Any = field(default_factory=lambda: BERT4RecConfig(
        hidden_size=100, inner_size=100, hidden_dropout=0.2, attn_dropout=0.2),
        metadata={"config_class": model_config_class})
    """The recommender over G (reference: BERT4Rec, H = 100, inner = H, dropout 0.5; here 0.2,
    the BERT4Rec baseline's). Its width is MGSD-WSS's H."""
    perceptron: str = "kernels"  # the paper's MGP, k-dim response mapped | mlp (released)
    n_kernels: int = 10  # k: one exact-match kernel + k - 1 bin kernels
    dropout: float = 0.1
    """``our_ae_drop_out``: every dropout of MGSD's own modules, attention included."""
    n_interests: int = 5  # K interest prototypes
    n_inserted: int = 5  # T_n: items inserted into each training row (weak supervision)
    ws_share: float = 1.0
    """Share of each batch's rows (the first: batches are shuffled) given an enhanced copy
    (1 = every row, the reference's; the enhanced pass is ~1/3 of a step's cost)."""
    gate: str = "ratio"
    """Item keep mask: ratio (drop each row's gate_drop_ratio least clean, straight-through)
    | sampled (Gumbel on the log-probabilities: the paper's, level not pinned)."""
    gate_drop_ratio: float = 0.2
    head_gradient: str = "weak"
    """Losses that train the noise head: weak (only the weak supervision; mask and weights read
    it detached: RECORD.md §8.4) | all (paper: L_ce, L_item through the mask and weights)."""
    interest_drop_ratio: float = 0.6  # share of the K prototypes left out (2 of 5 kept)
    margin_bound: float = 3.0  # clean-minus-noise logits -> bound * tanh(m / bound); 0: off
    ws_weight: float = 1.0
    """gamma (reference 10 on an MSE of probabilities; the BCE's logit gradient is larger)."""
    item_weight: float = 7.0  # zeta: weight of the item-level contrastive loss
    interest_weight: float = 1.0  # eta: weight of the interest-level contrastive loss
    use_item_level: bool = True
    """Ablation: False drops r_item and L_item (use_interest_level: r_int and L_int)."""
    use_interest_level: bool = True
    interest_negative_weights: str = "complement"  # L_int's negatives by 1 - w | same: by w
    initializer_range: float = 0.02  # std of the item table (N(0, std))
    prototype_std: float = 1.0
    """U ~ N(0, prototype_std), the reference's N(0, 1): r_int = sum_k h_k w_k U_k is summed
    with r_seq and r_item, LayerNorm outputs of norm ~sqrt(H), and N(0, 1) rows have that norm.
    (At the item table's 0.02, our earlier choice, r_int was ~0.5 % of u: the interest level
    then acted on the score through its loss only; audit 2026-12-03.)"""

    def __post_init__(self) -> None:
        super().__post_init__()
        check_choice("model.perceptron", self.perceptron, PERCEPTRONS)
        check_choice("model.gate", self.gate, GATES)
        check_choice("model.head_gradient", self.head_gradient, HEAD_GRADIENTS)
        check_choice("model.interest_negative_weights", self.interest_negative_weights,
                     INTEREST_NEGATIVES)
        check_range("model.n_kernels", self.n_kernels, 2)
        for key in ("n_interests", "n_inserted"):
            check_range(f"model.{key}", getattr(self, key), 1)
        check_range("model.dropout", self.dropout, 0, 1, high_open=True)
        check_range("model.ws_share", self.ws_share, 0, 1, low_open=True)
        for key in ("gate_drop_ratio", "interest_drop_ratio"):
            check_range(f"model.{key}", getattr(self, key), 0, 1, high_open=True)
        for key in ("margin_bound", "ws_weight", "item_weight", "interest_weight"):
            check_range(f"model.{key}", getattr(self, key), 0)
        check_range("model.initializer_range", self.initializer_range, 0, low_open=True)
        check_range("model.prototype_std", self.prototype_std, 0, low_open=True)
        if self.ws_weight == 0 and self.head_gradient == "weak":
            raise ConfigError("model.ws_weight=0 leaves nothing to train the noise head under "
                              "model.head_gradient=weak; the ablation sets head_gradient=all")


@dataclass(frozen=True)
class Granularities:
    """One forward pass over a batch's clean rows (training gates sampled).

    Attributes:
        encoded: (B, L, H) G, the MGP encoder's output (0 on padding).
        log_probs: (B, L, 2) the noise head's clean/noise log-probabilities; keep: (B, L)
            item keep mask (0/1, straight-through).
        interests: (B, K) w, interest distribution; selected: (B, K) h, kept prototypes (0/1).
        sequence: (B, H) r_seq; item: (B, H) r_item or None; interest: (B, H) r_int or None.
    """

    encoded: torch.Tensor
    log_probs: torch.Tensor
    keep: torch.Tensor
    interests: torch.Tensor
    selected: torch.Tensor
    sequence: torch.Tensor
    item: torch.Tensor | None
    interest: torch.Tensor | None

    @property
    def user(self) -> torch.Tensor:
        """(B, H) u = r_seq + r_item + r_int (§2.9)."""
        parts = [p for p in (self.sequence, self.item, self.interest) if p is not None]
        return torch.stack(parts).sum(0)


@register
class MGSDWSS(SequentialRecommender):
    name = "mgsd-wss"
    config_class = MGSDWSSConfig
    causal = False
    denoiser = True
    window_training = ""
    window_refusal = "MGSD-WSS predicts once per sequence; use train.instances=prefix"
    losses = ("ce", "bpr")

    def __init__(self, config: MGSDWSSConfig, n_items: int, max_len: int) -> None:
        super().__init__(config, n_items, max_len)
        H, c = config.width, config
        self.item_embedding = nn.Embedding(n_items + 1, H, padding_idx=0)
        self.dropout = nn.Dropout(c.dropout)
        self.perceptron = (GaussianKernelPerceptron(H, c.n_kernels) if c.perceptron == "kernels"
                           else PerceptronMLP(H))
        self.sequence_encoder = c.own_encoder(c.dropout, c.dropout)  # the MGP's
        self.noise_head = nn.Sequential(nn.Dropout(c.dropout), nn.Linear(H, H), nn.ReLU(),
                                        nn.Linear(H, 2, bias=False))
        self.item_encoder = c.own_encoder(c.dropout, c.dropout) if c.use_item_level else None
        self.interest_map = nn.Sequential(nn.Dropout(c.dropout), nn.Linear(H, H), nn.ReLU())
        self.prototypes = nn.Parameter(torch.empty(c.n_interests, H))  # U
        self.selector = CleanNoiseReadout(H, c.dropout, c.margin_bound, values=False)
        self.apply(lambda m: init_bert_weights(m, c.initializer_range))
        nn.init.normal_(self.prototypes, std=c.prototype_std)
        self.backbone = model_class(c.backbone.name).build_encoder(c.backbone, max_len)
        self.backbone.reset_parameters()
        # one positional table: the backbone's own when it has one (it then reads G, which
        # already carries positions, without adding them again), else MGSD's
        self.own_positions = (None if hasattr(self.backbone, "position_embedding")
                              else nn.Embedding(max_len, H))
        if self.own_positions is not None:
            init_bert_weights(self.own_positions, c.initializer_range)
        self.temperatures = c.temperature_schedule()

    def item_embeddings(self) -> torch.Tensor:
        return self.item_embedding.weight

    def positions(self, width: int) -> torch.Tensor:
        """(1, width, H) the one positional table's first rows."""
        table = (self.backbone.position_embedding if self.own_positions is None
                 else self.own_positions)
        return table.weight[:width][None]

    # -- Multiple Gaussian Kernel Perceptron + encoder (spec §2.2) ---------------------------
    def encode_sequence(self, items: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """(B, L, H) G: the perceptron's output plus positions through the causal encoder."""
        mask = (items > 0)[..., None].float()
        raw = self.item_embedding(items)
        anchor = gather_last(raw, lengths)  # pseudo-target: the last item
        # similarities on the undropped rows: the anchor's own is 1 in training too (audit F1)
        x = self.perceptron(self.dropout(raw), anchor, mask, undropped=raw)
        x = self.dropout(x + self.positions(items.shape[1])) * mask
        return self.sequence_encoder(x, attention_mask(items, causal=True)) * mask

    def noise_log_probs(self, encoded: torch.Tensor) -> torch.Tensor:
        """(B, L, 2) clean/noise log-probabilities of every item (§2.3, bounded)."""
        return bounded_log_probs(self.noise_head(encoded), self.config.margin_bound)

    # -- item granularity (§2.3, §2.7) --------------------------------------------------------
    def item_keep(self, log_probs: torch.Tensor, items: torch.Tensor, lengths: torch.Tensor,
                  sample: bool, tau: float) -> torch.Tensor:
        """(B, L) 0/1 keep mask with a straight-through gradient (``tau``: the Gumbel
        temperature); a row that would keep nothing keeps its most recent item."""
        c, mask = self.config, (items > 0).to(log_probs.dtype)
        ratio = c.gate_drop_ratio if c.gate == "ratio" else None
        keep = gate_keep(log_probs, mask, tau, sample, ratio)
        return keep_most_recent_if_empty(keep, lengths)

    def item_representation(self, encoded: torch.Tensor, items: torch.Tensor,
                            keep: torch.Tensor, clean: torch.Tensor) -> torch.Tensor:
        """(B, H) r_item: kept rows of G, weighted by their clean probability, compacted,
        re-positioned and encoded causally, read at the last kept item."""
        compacted, lengths, order = compact_kept(items, keep)
        valid = (compacted > 0)[..., None].float()
        gathered = order[..., None].expand_as(encoded)
        weights = (keep * clean).gather(1, order)[..., None]  # keep: exactly 1 forward
        x = encoded.gather(1, gathered) * weights
        x = self.dropout(x + self.positions(items.shape[1])) * valid
        return self.item_encoder(x, attention_mask(compacted, causal=True), query=lengths - 1)

    # -- interest granularity (§2.4, §2.5, §2.8) ----------------------------------------------
    def interest_distribution(self, encoded: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """(B, K) w: the mean over the real items of softmax_K(relu(W G_i + b) U^T)."""
        mask = (items > 0)[..., None].float()
        affinity = (self.interest_map(encoded) @ self.prototypes.T).softmax(-1) * mask
        return affinity.sum(1) / mask.sum(1).clamp(min=1.0)

    def select_interests(self, predicted: torch.Tensor, sample: bool, tau: float) -> torch.Tensor:
        """(B, K) h: the prototypes the selector keeps for the predicted target (r_seq)."""
        B, (K, H) = predicted.shape[0], self.prototypes.shape
        candidates = self.prototypes[None].expand(B, K, H)
        ones = predicted.new_ones(B, K, 1)
        log_probs, _ = self.selector(candidates, predicted, ones)
        return gate_keep(log_probs, ones[..., 0], tau, sample,
                         self.config.interest_drop_ratio)

    # -- prediction (§2.9) --------------------------------------------------------------------
    def granularities(self, batch: Batch, sample: bool | None = None,
                      temperatures: Temperatures | None = None) -> Granularities:
        """Both granularities of ``batch`` (the gates sampled in training unless ``sample`` says
        otherwise; ``temperatures`` of the batch in training, else the start values)."""
        c = self.config
        sample = self.training if sample is None else sample
        tau = (temperatures or self.temperatures.start).gumbel
        items, lengths = batch.items, batch.lengths
        encoded = self.encode_sequence(items, lengths)
        log_probs = self.noise_log_probs(encoded)
        judged = log_probs.detach() if c.head_gradient == "weak" else log_probs
        keep = self.item_keep(judged, items, lengths, sample, tau)
        sequence = self.backbone(encoded, items, lengths - 1, add_positions=False)  # r_seq
        item = interest = None
        if c.use_item_level:
            item = self.item_representation(encoded, items, keep, judged[..., 0].exp())
        interests = self.interest_distribution(encoded, items)
        selected = self.select_interests(sequence, sample, tau)
        if c.use_interest_level:
            interest = (selected * interests) @ self.prototypes  # sum_k h_k w_k U_k
        return Granularities(encoded, log_probs, keep, interests, selected, sequence, item,
                             interest)

    def encode(self, batch: Batch) -> torch.Tensor:
        """(B, L, H) the backbone over G at every position (r_seq's sequence)."""
        encoded = self.encode_sequence(batch.items, batch.lengths)
        return self.backbone(encoded, batch.items, add_positions=False)

    def sequence_representation(self, batch: Batch) -> torch.Tensor:
        return self.granularities(batch).user

    def denoising(self, batch: Batch) -> Denoising:
        """The item level's judgement: clean probabilities as weights, the keep mask."""
        parts = self.granularities(batch)
        weights = parts.log_probs[..., 0].exp() * (batch.items > 0)
        return Denoising(log_probs=parts.log_probs, weights=weights, keep=parts.keep)

    def noise_scores(self, batch: Batch) -> torch.Tensor:
        """(B, L) the noise head's noise probability, 0 on padding."""
        encoded = self.encode_sequence(batch.items, batch.lengths)
        return self.noise_log_probs(encoded)[..., 1].exp() * (batch.items > 0)

    # -- training objective (§3, §4) ----------------------------------------------------------
    def weak_supervision(self, batch: Batch) -> torch.Tensor:
        """BCE of the noise head on the enhanced rows against the inserted items' labels."""
        rows = math.ceil(self.config.ws_share * len(batch))
        noisy = insert_items(batch.items[:rows], batch.lengths[:rows], self.config.n_inserted,
                             self.n_items, exclude=batch.targets[:rows])
        log_probs = self.noise_log_probs(self.encode_sequence(noisy.items, noisy.lengths))
        real = noisy.items > 0
        margin = (log_probs[..., 0] - log_probs[..., 1])[real]
        return F.binary_cross_entropy_with_logits(margin, (~noisy.is_noise[real]).float())

    def contrastive_losses(self, parts: Granularities, batch: Batch,
                           tau: float) -> dict[str, torch.Tensor]:
        """The item- and interest-level noise-weighted contrastive losses (batch means) at
        contrastive temperature ``tau``."""
        c, user = self.config, parts.user
        losses = {}
        if c.use_item_level:
            clean = parts.log_probs[..., 0].exp().detach()  # the head's judgement, see above
            losses["item_cl"] = noise_weighted_contrastive(
                user, self.item_embedding(batch.items), parts.keep, batch.items > 0, tau,
                clean, 1.0 - clean).mean()
        if c.use_interest_level:
            w = parts.interests
            negative = 1.0 - w if c.interest_negative_weights == "complement" else w
            candidates = self.prototypes[None].expand(len(batch), *self.prototypes.shape)
            losses["interest_cl"] = noise_weighted_contrastive(
                user, candidates, parts.selected, torch.ones_like(w), tau, w, negative).mean()
        return losses

    def recommendation_loss(self, user: torch.Tensor, batch: Batch,
                            objective: Objective) -> torch.Tensor:
        """(B,) next-item loss of every row: CE (the paper's) or BPR with the batch's
        negatives."""
        items = self.item_embeddings()
        if objective.kind == "ce":
            return cross_entropy(user, items, batch.targets, objective.label_smoothing,
                                 reduction="none")
        if objective.kind == "bpr" and batch.negatives is not None:
            return bpr(user, items, batch.targets, batch.negatives, reduction="none")
        raise ValueError("MGSD-WSS trains with train.loss=ce (the paper's) or bpr")

    def loss(self, batch: Batch, objective: Objective,
             progress: TrainingProgress) -> ModelOutput:
        if batch.instances != "prefix":
            raise ValueError("MGSD-WSS trains on prefix instances only (train.instances=prefix)")
        c, temperatures = self.config, self.temperatures.at(progress)
        parts = self.granularities(batch, sample=True, temperatures=temperatures)
        per_sample = self.recommendation_loss(parts.user, batch, objective)
        rec = per_sample.mean()
        total, logged = rec, {"rec": float(rec.detach())}
        weights = parts.log_probs[..., 0].exp() * (batch.items > 0)
        logged.update(liveness(Denoising(parts.log_probs, weights, parts.keep), batch.items > 0,
                               c.margin_bound))
        logged["interests_kept"] = float(parts.selected.detach().mean())
        logged["interest_entropy"] = float(weight_entropy(
            parts.interests.detach(), torch.ones_like(parts.interests)).mean())
        scaled = {"item_cl": c.item_weight, "interest_cl": c.interest_weight}
        for name, value in self.contrastive_losses(parts, batch,
                                                   temperatures.contrastive).items():
            total = total + scaled[name] * value
            logged[name] = float(value.detach())
        if c.ws_weight > 0:  # after the scored representation: its random draws come last
            ws = self.weak_supervision(batch)
            total = total + c.ws_weight * ws
            logged["ws"] = float(ws.detach())
        return ModelOutput(loss=total, parts=logged, per_sample=per_sample)
