"""Evaluation protocols: how a log is split and which items may be ranked.

Every protocol splits each user's time-ordered sequence ``i1 .. in`` leave-one-out, the way
RecBole 1.2.1 does (``leave_one_num = 2`` over the user's ``n - 1`` prefix instances)::

    items:    i1  i2  ...  i(n-3)  i(n-2) | i(n-1) | in
    targets:      train ........ train    | valid  | test      (i1 is never a target)
    inputs:   the <= max_len items before each target (the test input holds the valid item)

Users with 3 items get a train and a test instance but no valid one; with 2 items, one train
instance; RecBole does the same. No retraining on train + valid before test.

What differs is the ranking (see :mod:`denoiserec.metrics` for ranks and ties):

* ``recbole``: full ranking over all items; only padding is excluded. Items the user already
  interacted with stay rankable (RecBole 1.2.1 sequential models, ``repeatable: True``).
* ``fmlp``: full ranking with the user's earlier items (everything before the target) excluded,
  the target itself excepted (S3-Rec / FMLP-Rec / BSARec).
* ``sampled``: the target against ``n_negatives`` items the user never interacted with, uniform
  or popularity-weighted, fixed per user by seed (``sampled`` numbers are not comparable with
  full ranking ones).

``target`` (multi-behaviour logs, END4Rec spec §1.3-1.4) splits differently: leave-one-out on
the **target behaviour** (``target_behaviour``, e.g. buy). A user's target-behaviour rows with a
non-empty input are its instances; RecBole's rule applies to them (the last is the test target,
the one before the valid target, ``min(2, n - 1)`` held out), the input is every interaction of
any behaviour strictly before the target, and full ranking, with the user's earlier items
excluded when ``mask_history`` is set. Training targets are the earlier target-behaviour rows
(``train_targets=target``) or every earlier row (``all``). Where the dataset ships a test file
(RetailRocket; ``Interactions.test_users``) and ``shipped_split`` is on, its users are the test
set (their last target; never trained on) and the other users hold out only a valid target.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from denoiserec.config import check_choice, check_range
from denoiserec.data.ctr import CTRConfig, build_samples
from denoiserec.data.datasets import KNOWN
from denoiserec.data.log import Interactions
from denoiserec.errors import ConfigError, ProtocolError
from denoiserec.metrics import TIE_RULES

PROTOCOLS = ("recbole", "fmlp", "sampled", "target", "ctr")
NEGATIVE_KINDS = ("uniform", "popularity")
TRAIN_TARGETS = ("target", "all")


@dataclass(frozen=True)
class ProtocolConfig:
    """Evaluation protocol: the split is always leave-one-out; ``name`` picks the ranking (and,
    for ``target``, leave-one-out on the target behaviour)."""

    name: str = "recbole"
    """``recbole``, ``fmlp``, ``sampled`` or ``target``."""
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
        check_choice("protocol.name", self.name, PROTOCOLS)
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
        stats: dict[str, int | str] = {
            "protocol": self.protocol.name,
            "train_instances": len(self.train_targets),
            "valid_instances": len(self.valid),
            "test_instances": len(self.test),
        }
        if self.protocol.name == "ctr":
            stats["ctr_split"] = self.protocol.ctr.split
            stats["ctr_sampler"] = self.protocol.ctr.sampler
        if self.protocol.name == "target":
            stats["target_behaviour"] = self.protocol.target_behaviour
            test_users = self.evaluation_log.test_users
            stats["shipped_test_users"] = (int(test_users.sum()) if test_users is not None
                                           and self.protocol.shipped_split else 0)
        return stats


def leave_one_out(log: Interactions) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """RecBole's leave-one-out over prefix instances: (train_rows, train_end, valid, test)."""
    starts, ends = log.offsets[:-1], log.offsets[1:]
    n_instances = np.maximum(ends - starts - 1, 0)
    held_out = np.minimum(2, np.maximum(n_instances - 1, 0))  # RecBole: min(2, instances - 1)
    train_end = ends - held_out
    has_test = held_out >= 1
    has_valid = held_out >= 2
    test = (ends - 1)[has_test]
    valid = (ends - 2)[has_valid]
    first_target = starts + 1
    counts = np.maximum(train_end - first_target, 0)
    train_rows = np.repeat(first_target - np.cumsum(np.concatenate([[0], counts[:-1]])), counts)
    train_rows = train_rows + np.arange(counts.sum())
    return train_rows, train_end, valid, test


def protocol_negatives(log: Interactions, users: np.ndarray, n: int, kind: str,
                       seed: int) -> np.ndarray:
    """(len(users), n) items each user never interacted with, fixed by ``seed``.

    Sampling with replacement across draws is avoided: collisions with the user's items or with
    another negative of the same row are redrawn (vectorised rejection, repeated until clean).
    """
    if n >= log.n_items:
        raise ProtocolError(f"sampled: n_negatives={n} must be below the number of items "
                            f"({log.n_items})")
    rng = np.random.default_rng(seed)
    counts = np.bincount(log.items, minlength=log.n_items + 1).astype(np.float64)
    counts[0] = 0
    drawable = np.ones(log.n_items + 1, dtype=bool) if kind == "uniform" else counts > 0
    drawable[0] = False
    width = log.n_items + 1
    seen = np.unique(log.row_users * width + log.items)  # sorted (user, item) keys
    seen_drawable = np.bincount(seen[drawable[seen % width]] // width, minlength=log.n_users)
    short = np.flatnonzero(int(drawable.sum()) - seen_drawable[users] < n)
    if len(short):  # rejection sampling would never end for these users
        user = log.user_tokens[users[short[0]]]
        raise ProtocolError(f"sampled: user {user} (and {len(short) - 1} more) has fewer than "
                            f"n_negatives={n} items left to draw; lower protocol.n_negatives")
    weights = counts / counts.sum() if kind == "popularity" else None
    if kind == "uniform":
        weights = np.r_[0.0, np.full(log.n_items, 1.0 / log.n_items)]
    elif kind != "popularity":
        raise ProtocolError(f"sampled: negatives must be 'uniform' or 'popularity', got '{kind}'")
    cumulative = np.cumsum(weights)
    negatives = np.searchsorted(cumulative, rng.random((len(users), n)), side="right")
    while True:
        sorted_rows = np.sort(negatives, axis=1)
        duplicate = np.zeros_like(negatives, dtype=bool)
        duplicate[:, 1:] = sorted_rows[:, 1:] == sorted_rows[:, :-1]
        order = np.argsort(negatives, axis=1, kind="stable")
        bad = np.zeros_like(duplicate)
        np.put_along_axis(bad, order, duplicate, axis=1)
        keys = users[:, None] * width + negatives
        position = np.searchsorted(seen, keys).clip(max=len(seen) - 1)
        bad |= seen[position] == keys
        if not bad.any():
            return negatives
        negatives[bad] = np.searchsorted(cumulative, rng.random(int(bad.sum())), side="right")


def target_behaviour_rows(log: Interactions, protocol: ProtocolConfig) -> np.ndarray:
    """(N,) True on the rows of the target behaviour that have an input (not a user's first)."""
    if log.behaviours is None or log.behaviour_tokens is None:
        raise ProtocolError(f"{log.name}: the target protocol needs behaviours; the log has none")
    ids = [b for b, token in enumerate(log.behaviour_tokens) if token in protocol.target_tokens]
    if not ids:
        known = KNOWN.get(log.name)
        hint = (f" (its buys: --set protocol.target_behaviour={known.buy_tokens})"
                if known is not None and known.buy_tokens else "")
        raise ProtocolError(f"{log.name}: no behaviour {protocol.target_behaviour} "
                            f"(the log has {', '.join(log.behaviour_tokens)}); set "
                            f"protocol.target_behaviour{hint}")
    is_target = np.isin(log.behaviours, ids)
    is_target[log.offsets[:-1][log.lengths > 0]] = False
    return is_target


def target_leave_one_out(log: Interactions, protocol: ProtocolConfig
                         ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Leave-one-out on the target behaviour: (train_rows, train_end, valid, test), see the
    module docstring (END4Rec spec §1.3)."""
    rows = np.flatnonzero(target_behaviour_rows(log, protocol))  # grouped by user, in order
    users = log.row_users[rows]
    count = np.bincount(users, minlength=log.n_users)
    shipped = log.test_users is not None and protocol.shipped_split and log.test_users.any()
    test_only = log.test_users if shipped else np.zeros(log.n_users, dtype=bool)
    held = np.minimum(2, np.maximum(count - 1, 0))  # RecBole's rule, on target instances
    n_test = np.where(shipped, test_only & (count >= 1), held >= 1).astype(np.int64)
    n_valid = np.where(shipped, ~test_only & (count >= 2), held == 2).astype(np.int64)
    from_end = count[users] - 1 - (np.arange(len(rows)) - (np.cumsum(count) - count)[users])
    test = rows[(from_end == 0) & (n_test[users] == 1)]
    valid = rows[(from_end == n_test[users]) & (n_valid[users] == 1)]
    n_held = n_test + n_valid
    first_held = from_end == n_held[users] - 1
    starts, ends = log.offsets[:-1], log.offsets[1:]
    train_end = ends.copy()
    train_end[users[first_held]] = rows[first_held]
    train_end[test_only] = starts[test_only]
    if protocol.train_targets == "target":
        train_rows = rows[(from_end >= n_held[users]) & ~test_only[users]]
    else:  # every row with an input before the first held-out target
        in_train = np.arange(log.n_interactions) < train_end[log.row_users]
        in_train[starts[log.lengths > 0]] = False
        train_rows = np.flatnonzero(in_train)
    return train_rows, train_end, valid, test


def _leave_one_out(log: Interactions, _: ProtocolConfig) -> tuple[np.ndarray, ...]:
    return leave_one_out(log)


def split(log: Interactions, protocol: ProtocolConfig,
          eval_log: Interactions | None = None) -> Split:
    """Split ``log`` with ``protocol`` (see the module docstring).

    With ``eval_log`` (the clean log of which ``log`` is a noise-injected copy, same users in the
    same order), training instances come from ``log`` and valid/test instances from
    ``eval_log``.
    """
    if protocol.name == "ctr":
        return ctr_split(log, protocol, eval_log)
    rule = target_leave_one_out if protocol.name == "target" else _leave_one_out
    train_rows, train_end, _, _ = rule(log, protocol)
    clean = log if eval_log is None else eval_log
    if clean.n_users != log.n_users:
        raise ProtocolError("the evaluation log must have the same users as the training log")
    _, _, valid, test = rule(clean, protocol)
    if len(test) == 0:
        need = ("two target-behaviour interactions after the first"
                if protocol.name == "target" else "3 interactions")
        raise ProtocolError(f"{log.name}: no user has enough interactions to evaluate ({need})")
    row_users = clean.row_users
    eval_sets = []
    for offset, targets in enumerate((valid, test)):
        users = row_users[targets]
        negatives = None
        if protocol.name == "sampled":
            negatives = protocol_negatives(clean, users, protocol.n_negatives,
                                           protocol.negatives, protocol.seed + offset)
        eval_sets.append(EvalSet(users=users, targets=targets, negatives=negatives))
    return Split(log=log, protocol=protocol, train_users=log.row_users[train_rows],
                 train_targets=train_rows, train_end=train_end, valid=eval_sets[0],
                 test=eval_sets[1], eval_log=eval_log)


def ctr_split(log: Interactions, protocol: ProtocolConfig,
              eval_log: Interactions | None = None) -> Split:
    """The ``ctr`` protocol's split (ATJT spec §1, ``data/ctr.py``): one positive per user with
    its fixed sampled negatives; valid/test instances carry ``protocol.ctr.negatives``
    candidates each, ranked against the target (metrics: ``metrics.candidate_metrics``)."""
    samples = build_samples(log, protocol.ctr, protocol.seed, eval_log)
    if len(samples.test) == 0 or len(samples.valid) == 0 or len(samples.train) == 0:
        raise ProtocolError(f"{log.name}: too few users for a CTR split with train, valid and "
                            f"test users ({len(samples.train)}, {len(samples.valid)}, "
                            f"{len(samples.test)})")
    valid, test = (EvalSet(users=part.users, targets=part.rows, negatives=part.negatives)
                   for part in (samples.valid, samples.test))
    return Split(log=log, protocol=protocol, train_users=samples.train.users,
                 train_targets=samples.train.rows, train_end=samples.train_end, valid=valid,
                 test=test, eval_log=eval_log, train_negatives=samples.train.negatives)


def exclude_unrankable(scores: torch.Tensor, log_items: torch.Tensor, starts: torch.Tensor,
                       targets: torch.Tensor, target_items: torch.Tensor,
                       protocol: ProtocolConfig, negatives: torch.Tensor | None) -> torch.Tensor:
    """Set the scores of items the protocol does not rank to ``-inf`` (in place) and return them.

    Args:
        scores: (B, n_items + 1) model scores.
        log_items: (N,) the log's item ids (the flat array).
        starts: (B,) first row of each instance's user; targets: (B,) target rows.
        target_items: (B,) target item ids.
        negatives: (B, n) sampled negatives for ``sampled``.
    """
    scores[:, 0] = -torch.inf
    if protocol.name == "fmlp" or (protocol.name == "target" and protocol.mask_history):
        lengths = targets - starts
        rows = torch.repeat_interleave(torch.arange(len(targets), device=scores.device), lengths)
        first = torch.cumsum(lengths, 0) - lengths
        positions = torch.arange(int(lengths.sum()), device=scores.device)
        history = log_items[starts[rows] + positions - first[rows]]
        keep = scores.gather(1, target_items[:, None])
        scores[rows, history] = -torch.inf
        scores.scatter_(1, target_items[:, None], keep)
    elif protocol.name == "sampled":
        rankable = torch.zeros_like(scores, dtype=torch.bool)
        rankable.scatter_(1, negatives, True)
        rankable.scatter_(1, target_items[:, None], True)
        scores.masked_fill_(~rankable, -torch.inf)
    return scores
