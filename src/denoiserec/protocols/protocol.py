"""Evaluation protocols: each a class that owns its CLI name, its split and its ranking.

Everything else asks the protocol: ``protocol_of(config)`` gives the :class:`Protocol` whose
``name`` the settings carry; it splits a log (``split``), says which items a test ranks
(``exclude_unrankable``) or that it scores fixed candidates (``scores_candidates``), which
model tasks it serves and which extra metrics it reports, whether it reads a shipped test file,
and what its split adds to the statistics. ``PROTOCOLS`` lists the classes by CLI name.

Every protocol but ``ctr`` splits each user's time-ordered sequence ``i1 .. in`` leave-one-out,
the way RecBole 1.2.1 does (``leave_one_num = 2`` over the user's ``n - 1`` prefix instances)::

    items:    i1  i2  ...  i(n-3)  i(n-2) | i(n-1) | in
    targets:      train ........ train    | valid  | test      (i1 is never a target)
    inputs:   the <= max_len items before each target (the test input holds the valid item)

Users with 3 items get a train and a test instance but no valid one; with 2 items, one train
instance; RecBole does the same. No retraining on train + valid before test. What differs is
the ranking (see :mod:`denoiserec.metrics` for ranks and ties), in each class's docstring.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import torch

from denoiserec.config import check_choice, check_range
from denoiserec.data.ctr import CTRConfig, build_samples
from denoiserec.data.log import Interactions
from denoiserec.errors import ConfigError, ProtocolError
from denoiserec.metrics import TIE_RULES
from denoiserec.protocols.splits import leave_one_out, protocol_negatives, target_leave_one_out

NEGATIVE_KINDS = ("uniform", "popularity")
TRAIN_TARGETS = ("target", "all")


@dataclass(frozen=True)
class ProtocolConfig:
    """The settings of an evaluation protocol; ``name`` picks the :class:`Protocol` class below
    that splits and ranks (``protocol_of``)."""

    name: str = "recbole"
    """``recbole``, ``fmlp``, ``sampled``, ``target`` or ``ctr`` (``PROTOCOLS``)."""
    n_negatives: int = 99
    """``sampled`` only: negatives ranked against the target."""
    negatives: str = "uniform"
    """``sampled`` only: ``uniform`` or ``popularity`` negatives."""
    seed: int = 0
    """``sampled`` only: seed of the fixed negatives."""
    ties: str = "id"
    """Rank of a target tied with other items: ``id`` (after the tied items with lower ids;
    deterministic) or ``topk`` (``torch.topk``'s order, RecBole 1.2.1's evaluator)."""

    target_behaviour: str = "buy"
    """``target`` only: the raw behaviour token(s) of the target behaviour, comma-separated
    (Taobao ``buy``; RetailRocket ``0,3``: its buys and its re-inserted earlier buys)."""
    mask_history: bool = False
    """``target`` only: exclude the user's earlier items from the ranking (as ``fmlp``); off
    ranks every item (END4Rec spec §1.4)."""
    train_targets: str = "target"
    """``target`` only: training targets are the earlier target-behaviour rows (``target``)
    or every earlier row of any behaviour (``all``; the window mode always trains on all)."""
    shipped_split: bool = True
    """``target`` only: honour a shipped test file (RetailRocket): its users are the test set."""

    ctr: CTRConfig = field(default_factory=CTRConfig)
    """``ctr`` only: the CTR sample builder and metrics (``data/ctr.py``, ATJT spec §1-2)."""

    def __post_init__(self) -> None:
        check_choice("protocol.name", self.name, PROTOCOL_NAMES)
        check_choice("protocol.train_targets", self.train_targets, TRAIN_TARGETS)
        check_choice("protocol.negatives", self.negatives, NEGATIVE_KINDS)
        check_choice("protocol.ties", self.ties, TIE_RULES)
        check_range("protocol.n_negatives", self.n_negatives, 1)
        if not all(self.target_tokens):
            raise ConfigError("protocol.target_behaviour must name behaviours, comma-separated; "
                              f"got '{self.target_behaviour}'")
        if self.name != "ctr" and self.ctr != CTRConfig():
            raise ConfigError("protocol.ctr.* settings need protocol=ctr")

    @property
    def target_tokens(self) -> tuple[str, ...]:
        """The target behaviour's raw tokens."""
        return tuple(token.strip() for token in self.target_behaviour.split(","))


# settings only some protocols read: set under another protocol they would do nothing
PROTOCOL_ONLY = {"n_negatives": ("sampled",), "negatives": ("sampled",),
                 "seed": ("sampled", "ctr"), "target_behaviour": ("target",),
                 "mask_history": ("target",), "train_targets": ("target",),
                 "shipped_split": ("target",)}


def inert_settings(protocol: ProtocolConfig) -> list[str]:
    """The settings given (not at their default) that ``protocol.name`` does not read."""
    default = ProtocolConfig(name=protocol.name)
    return [f"protocol.{key} is read by protocol={' and '.join(names)} only, not "
            f"{protocol.name}" for key, names in PROTOCOL_ONLY.items()
            if protocol.name not in names and getattr(protocol, key) != getattr(default, key)]


@dataclass(frozen=True)
class EvalSet:
    """Evaluation instances: ``targets[j]`` is the log row of instance j's target item.

    Attributes:
        users: (n,) user index.
        targets: (n,) global row of the target; the input is the rows before it (same user).
        negatives: (n, n_negatives) sampled negative item ids (``sampled`` only), else None.
    """

    users: np.ndarray
    targets: np.ndarray
    negatives: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.targets)


@dataclass(frozen=True)
class Split:
    """A log split by a protocol.

    Attributes:
        log: the interactions training instances come from (a noise-injected log included).
        eval_log: the log valid/test instances come from: ``log`` itself, or the clean log
            when ``log`` had noise injected into its training part.
        protocol: the protocol's config (its ``name`` is printed with every number).
        train_users: (m,) user of each training target.
        train_targets: (m,) global rows that are training targets (prefix instances).
        train_end: (n_users,) exclusive end row of each user's training region.
        valid: the validation instances; test: the test instances.
        train_negatives: (m, k) fixed negatives of each training target (``ctr``: the
            sampled candidates each positive is paired with), or None.
    """

    log: Interactions
    protocol: ProtocolConfig
    train_users: np.ndarray
    train_targets: np.ndarray
    train_end: np.ndarray
    valid: EvalSet
    test: EvalSet
    eval_log: Interactions | None = None
    train_negatives: np.ndarray | None = None

    @property
    def evaluation_log(self) -> Interactions:
        return self.log if self.eval_log is None else self.eval_log

    @property
    def train_starts(self) -> np.ndarray:
        return self.log.offsets[:-1]

    def statistics(self) -> dict[str, int | str]:
        return {"protocol": self.protocol.name, "train_instances": len(self.train_targets),
                "valid_instances": len(self.valid), "test_instances": len(self.test),
                **protocol_of(self.protocol).statistics(self.evaluation_log)}


class Protocol:
    """One evaluation protocol, built from its settings (``protocol_of``).

    Class attributes:
        name: the CLI name (``--protocol``, ``protocol.name``).
        tasks: the model tasks it trains (``SequentialRecommender.task``).
        metrics: metrics it reports beyond Hit/NDCG/MRR@k (valid_metric may name them).
        scores_candidates: evaluation scores each instance's fixed candidates
            (``model.score_candidates``) instead of ranking the catalogue.
    """

    name: ClassVar[str] = ""
    tasks: ClassVar[tuple[str, ...]] = ("sequential",)
    metrics: ClassVar[tuple[str, ...]] = ()
    scores_candidates: ClassVar[bool] = False
    enough: ClassVar[str] = "3 interactions"  # what a user needs to be evaluated

    def __init__(self, config: ProtocolConfig) -> None:
        self.config = config

    @property
    def reads_shipped_test(self) -> bool:
        """The dataset's shipped test file (RetailRocket) is read with the log."""
        return False

    def leave_one_out(self, log: Interactions) -> tuple[np.ndarray, ...]:
        """(train_rows, train_end, valid, test) of ``log``."""
        return leave_one_out(log)

    def split(self, log: Interactions, eval_log: Interactions | None = None) -> Split:
        """Split ``log``; with ``eval_log`` (the clean log of which ``log`` is a noise-injected
        copy, same users in the same order), training instances come from ``log`` and
        valid/test instances from ``eval_log``."""
        train_rows, train_end, _, _ = self.leave_one_out(log)
        clean = log if eval_log is None else eval_log
        if clean.n_users != log.n_users:
            raise ProtocolError("the evaluation log must have the same users as the training "
                                "log")
        _, _, valid, test = self.leave_one_out(clean)
        if len(test) == 0:
            raise ProtocolError(f"{log.name}: no user has enough interactions to evaluate "
                                f"({self.enough})")
        eval_sets = [EvalSet(users=clean.row_users[targets], targets=targets,
                             negatives=self.negatives(clean, clean.row_users[targets], offset))
                     for offset, targets in enumerate((valid, test))]
        return Split(log=log, protocol=self.config, train_users=log.row_users[train_rows],
                     train_targets=train_rows, train_end=train_end, valid=eval_sets[0],
                     test=eval_sets[1], eval_log=eval_log)

    def negatives(self, log: Interactions, users: np.ndarray, offset: int) -> np.ndarray | None:
        """(n, k) fixed negatives of evaluation instances (``offset`` 0: valid, 1: test)."""
        return None

    def exclude_unrankable(self, scores: torch.Tensor, log_items: torch.Tensor,
                           starts: torch.Tensor, targets: torch.Tensor,
                           target_items: torch.Tensor, negatives: torch.Tensor | None,
                           first: int = 0) -> torch.Tensor:
        """Set the scores of items the protocol does not rank to ``-inf`` (in place) and return
        them: padding only, by default.

        Args:
            scores: (B, C) model scores of the items ``first .. first + C - 1``: all items,
                padding included, when ``first`` is 0 and C is n_items + 1; a chunk otherwise.
            log_items: (N,) the log's item ids (the flat array).
            starts: (B,) first row of each instance's user; targets: (B,) target rows.
            target_items: (B,) target item ids.
            negatives: (B, n) the instances' fixed negatives, or None.
            first: the item id of column 0.
        """
        return _exclude_padding(scores, first)

    def statistics(self, evaluation_log: Interactions) -> dict[str, Any]:
        """What the protocol adds to a split's statistics."""
        return {}


def _exclude_padding(scores: torch.Tensor, first: int) -> torch.Tensor:
    if first == 0:
        scores[:, 0] = -torch.inf
    return scores


def _inside(ids: torch.Tensor, first: int, width: int) -> torch.Tensor:
    """Which of ``ids`` fall in the chunk of items ``first .. first + width - 1``."""
    return (ids >= first) & (ids < first + width)


def _exclude_history(scores: torch.Tensor, log_items: torch.Tensor, starts: torch.Tensor,
                     targets: torch.Tensor, target_items: torch.Tensor,
                     first: int) -> torch.Tensor:
    """Every item before each target in its user's sequence to ``-inf``, the target itself
    excepted (vectorised over the histories; only the items of the chunk at ``first``)."""
    width = scores.shape[1]
    lengths = targets - starts
    rows = torch.repeat_interleave(torch.arange(len(targets), device=scores.device), lengths)
    offset = torch.cumsum(lengths, 0) - lengths
    positions = torch.arange(int(lengths.sum()), device=scores.device)
    history = log_items[starts[rows] + positions - offset[rows]]
    target_column = (target_items - first).clamp(0, width - 1)[:, None]
    keep = scores.gather(1, target_column)
    seen = _inside(history, first, width)
    scores[rows[seen], history[seen] - first] = -torch.inf
    target_in = _inside(target_items, first, width)[:, None]
    scores.scatter_(1, target_column, torch.where(target_in, keep,
                                                  scores.gather(1, target_column)))
    return scores


class RecBoleProtocol(Protocol):
    """``recbole``: full ranking over all items; only padding is excluded. Items the user
    already interacted with stay rankable (RecBole 1.2.1 sequential models,
    ``repeatable: True``)."""

    name = "recbole"


class FMLPProtocol(Protocol):
    """``fmlp``: full ranking with the user's earlier items (everything before the target)
    excluded, the target itself excepted (S3-Rec / FMLP-Rec / BSARec)."""

    name = "fmlp"

    def exclude_unrankable(self, scores, log_items, starts, targets, target_items, negatives,
                           first=0):
        _exclude_padding(scores, first)
        return _exclude_history(scores, log_items, starts, targets, target_items, first)


class SampledProtocol(Protocol):
    """``sampled``: the target against ``n_negatives`` items the user never interacted with,
    uniform or popularity-weighted, fixed per user by seed (``sampled`` numbers are not
    comparable with full ranking ones)."""

    name = "sampled"

    def negatives(self, log, users, offset):
        c = self.config
        return protocol_negatives(log, users, c.n_negatives, c.negatives, c.seed + offset)

    def exclude_unrankable(self, scores, log_items, starts, targets, target_items, negatives,
                           first=0):
        rankable = torch.zeros_like(scores, dtype=torch.bool)
        candidates = torch.cat([negatives, target_items[:, None]], 1)
        rows = torch.arange(len(scores), device=scores.device)[:, None].expand_as(candidates)
        seen = _inside(candidates, first, scores.shape[1])
        rankable[rows[seen], candidates[seen] - first] = True
        return scores.masked_fill_(~rankable, -torch.inf)


class TargetProtocol(Protocol):
    """``target`` (multi-behaviour logs, END4Rec spec §1.3-1.4): leave-one-out on the **target
    behaviour** (``target_behaviour``, e.g. buy). A user's target-behaviour rows with a
    non-empty input are its instances; RecBole's rule applies to them (the last is the test
    target, the one before the valid target, ``min(2, n - 1)`` held out), the input is every
    interaction of any behaviour strictly before the target, and full ranking, with the user's
    earlier items excluded when ``mask_history`` is set. Training targets are the earlier
    target-behaviour rows (``train_targets=target``) or every earlier row (``all``). Where the
    dataset ships a test file (RetailRocket; ``Interactions.test_users``) and ``shipped_split``
    is on, its users are the test set (their last target; never trained on) and the other
    users hold out only a valid target."""

    name = "target"
    enough = "two target-behaviour interactions after the first"

    @property
    def reads_shipped_test(self) -> bool:
        return self.config.shipped_split

    def leave_one_out(self, log):
        c = self.config
        return target_leave_one_out(log, c.target_tokens, c.shipped_split, c.train_targets)

    def exclude_unrankable(self, scores, log_items, starts, targets, target_items, negatives,
                           first=0):
        _exclude_padding(scores, first)
        if self.config.mask_history:
            _exclude_history(scores, log_items, starts, targets, target_items, first)
        return scores

    def statistics(self, evaluation_log):
        test_users = evaluation_log.test_users
        shipped = (int(test_users.sum()) if test_users is not None and self.config.shipped_split
                   else 0)
        return {"target_behaviour": self.config.target_behaviour, "shipped_test_users": shipped}


class CTRProtocol(Protocol):
    """``ctr`` (ATJT spec §1-2, ``data/ctr.py``): one positive per user with its fixed sampled
    negatives; valid/test instances carry ``protocol.ctr.negatives`` candidates each, scored by
    ``model.score_candidates`` and ranked against the target (``metrics.candidate_metrics``,
    AUC included). Trains CTR models (``models/ctr.py``) and sequential ones."""

    name = "ctr"
    tasks = ("sequential", "ctr")
    metrics = ("auc",)
    scores_candidates = True

    def split(self, log, eval_log=None):
        samples = build_samples(log, self.config.ctr, self.config.seed, eval_log)
        if len(samples.test) == 0 or len(samples.valid) == 0 or len(samples.train) == 0:
            raise ProtocolError(f"{log.name}: too few users for a CTR split with train, valid "
                                f"and test users ({len(samples.train)}, {len(samples.valid)}, "
                                f"{len(samples.test)})")
        valid, test = (EvalSet(users=part.users, targets=part.rows, negatives=part.negatives)
                       for part in (samples.valid, samples.test))
        return Split(log=log, protocol=self.config, train_users=samples.train.users,
                     train_targets=samples.train.rows, train_end=samples.train_end,
                     valid=valid, test=test, eval_log=eval_log,
                     train_negatives=samples.train.negatives)

    def statistics(self, evaluation_log):
        return {"ctr_split": self.config.ctr.split, "ctr_sampler": self.config.ctr.sampler}


PROTOCOLS: dict[str, type[Protocol]] = {cls.name: cls for cls in (
    RecBoleProtocol, FMLPProtocol, SampledProtocol, TargetProtocol, CTRProtocol)}
PROTOCOL_NAMES = tuple(PROTOCOLS)


def protocol_of(config: ProtocolConfig) -> Protocol:
    """The protocol ``config`` names, with its settings."""
    return PROTOCOLS[config.name](config)


def split(log: Interactions, protocol: ProtocolConfig,
          eval_log: Interactions | None = None) -> Split:
    """Split ``log`` with the protocol ``protocol`` names (``Protocol.split``)."""
    return protocol_of(protocol).split(log, eval_log)


def exclude_unrankable(scores: torch.Tensor, log_items: torch.Tensor, starts: torch.Tensor,
                       targets: torch.Tensor, target_items: torch.Tensor,
                       protocol: ProtocolConfig, negatives: torch.Tensor | None,
                       first: int = 0) -> torch.Tensor:
    """``Protocol.exclude_unrankable`` of the protocol ``protocol`` names."""
    return protocol_of(protocol).exclude_unrankable(scores, log_items, starts, targets,
                                                    target_items, negatives, first)
