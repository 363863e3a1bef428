"""CTR samples (ATJT spec §1): one target per user with its history, sampled negatives.

The click-through-rate setting of ATJT (``docs/specs/atjt.md``, "spec") turns a log into
binary samples ``(user, history, candidate, label)``:

* **one target per user** (§1.1): the user's last interaction; its history is every earlier
  interaction (the batcher keeps the ``data.max_len`` most recent, right-padded, the spec's
  left-aligned layout; ``max_len=19`` is the spec's). Users with one interaction have no
  history and are left out;
* **split by user** (§1.4, ``split=users``): a seeded permutation gives ``test_share`` of the
  users to test, ``valid_share`` to validation and the rest to training, so test users are
  never trained on. The published code has **no validation split** and tuned on test (§1.4,
  §7.8); here model selection only sees the validation users. ``split=last`` is the
  alternative that keeps every user in training: the last interaction is the test target,
  the one before the valid target, the one before that the training target;
* **negatives** (§1.3): drawn from item popularity^0.75 (``sampler=pop075``), never an item
  of the user's own log, distinct within a row, seeded (``np.random.default_rng``, one
  stream per part). Training rows get ``train_negatives`` (1, spec) and evaluation rows
  ``negatives`` (63, spec) candidates.

The published sampler's bug (§1.3, §7.14): its probabilities are a ``value_counts()`` Series
(sorted by count, descending) used as ``p`` for ids ``0..n-1``, so the k-th most popular
item's probability goes to item id k. ``sampler=pop075_idmisaligned`` reproduces exactly that
(ties in the count keep the lower id first) and is labelled as the bug; ``pop075`` gives every
item its own popularity^0.75. The code's MovieLens builder drew 1 negative per user (§1.3,
§7.15); we draw ``negatives`` for every dataset. The code draws with replacement; we draw
distinct negatives (a candidate list is a set).

Everything here is vectorised over users: rejection sampling redraws all bad cells of all rows
at once, round after round.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from denoiserec.config import check_choice, check_range
from denoiserec.data.log import Interactions
from denoiserec.errors import ConfigError, ProtocolError

SAMPLERS = ("pop075", "pop075_idmisaligned")
CTR_SPLITS = ("users", "last")
STREAMS = {"partition": 0, "train": 1, "valid": 2, "test": 3}  # one RNG stream each


@dataclass(frozen=True)
class CTRConfig:
    """The CTR sample builder and metrics (``protocol.ctr.*``; ``protocol=ctr`` only)."""

    split: str = "users"
    """``users`` (spec §1.4: users partitioned, test users never trained on) or ``last``
    (every user: last = test, second to last = valid, third to last = train target)."""
    test_share: float = 0.2
    """``users`` only: share of the users held out for test (the code's 4:1)."""
    valid_share: float = 0.1
    """``users`` only: share of the users held out for validation (the code has none)."""
    negatives: int = 63
    """Negatives ranked against each valid/test target (spec §2: 63, 64 candidates)."""
    train_negatives: int = 1
    """Negatives paired with each training positive (spec §1.3: 1)."""
    sampler: str = "pop075"
    """``pop075`` (popularity^exponent, aligned with the ids) or ``pop075_idmisaligned``
    (the published code's bug, spec §1.3: probabilities in count order over ids)."""
    exponent: float = 0.75
    """Popularity exponent of the sampler (word2vec's 0.75, spec §1.3)."""
    paper_metrics: bool = False
    """Also report the published code's metric variants (spec §2): ``hit@5_atjt`` (rank <= 5
    and click probability > 0.5) and ``ndcg@5_atjt`` (discount 1/log2(r + 2), IDCG of five
    relevant items)."""

    def __post_init__(self) -> None:
        check_choice("protocol.ctr.split", self.split, CTR_SPLITS)
        check_choice("protocol.ctr.sampler", self.sampler, SAMPLERS)
        check_range("protocol.ctr.test_share", self.test_share, 0, 1, low_open=True,
                    high_open=True)
        check_range("protocol.ctr.valid_share", self.valid_share, 0, 1, low_open=True,
                    high_open=True)
        if self.test_share + self.valid_share >= 1:
            raise ConfigError("protocol.ctr.test_share + protocol.ctr.valid_share must be "
                                f"below 1; got {self.test_share + self.valid_share:g}")
        check_range("protocol.ctr.negatives", self.negatives, 1)
        check_range("protocol.ctr.train_negatives", self.train_negatives, 1)
        check_range("protocol.ctr.exponent", self.exponent, 0)


@dataclass(frozen=True)
class CTRPart:
    """One part of the samples: ``rows[j]`` is the log row of sample j's positive target (its
    history is the user's rows before it), ``negatives[j]`` its sampled negative items.

    Attributes:
        users: (n,) user index; rows: (n,) global log rows; negatives: (n, k) item ids.
    """

    users: np.ndarray
    rows: np.ndarray
    negatives: np.ndarray

    def __len__(self) -> int:
        return len(self.rows)


@dataclass(frozen=True)
class CTRSamples:
    """The CTR samples of a log (spec §1): train / valid / test parts and, per user, the
    exclusive end row of the interactions training may read (``train_end``)."""

    train: CTRPart
    valid: CTRPart
    test: CTRPart
    train_end: np.ndarray


def negative_distribution(log: Interactions, exponent: float = 0.75,
                          misaligned: bool = False) -> np.ndarray:
    """(n_items + 1,) sampling probabilities: count^exponent normalised, 0 for padding.

    ``misaligned`` (the published bug, spec §1.3): the probabilities sorted by count,
    descending (ties: lower id first), assigned to ids 1, 2, ... in that order.
    """
    counts = np.bincount(log.items, minlength=log.n_items + 1).astype(np.float64)
    counts[0] = 0.0
    weights = np.where(counts > 0, counts ** exponent, 0.0)
    if misaligned:
        by_count = np.argsort(-counts[1:], kind="stable") + 1  # value_counts() order
        weights = np.r_[0.0, weights[by_count]]
    return weights / weights.sum()


def _user_item_keys(log: Interactions) -> np.ndarray:
    """Sorted unique ``user * (n_items + 1) + item`` keys of the log's interactions."""
    return np.unique(log.row_users * (log.n_items + 1) + log.items)


def _duplicates(draws: np.ndarray) -> np.ndarray:
    """(n, k) True on every repeat of a value earlier in its row (the first one stays)."""
    order = np.argsort(draws, axis=1, kind="stable")
    ordered = np.take_along_axis(draws, order, axis=1)
    repeat = np.zeros_like(draws, dtype=bool)
    repeat[:, 1:] = ordered[:, 1:] == ordered[:, :-1]
    out = np.zeros_like(repeat)
    np.put_along_axis(out, order, repeat, axis=1)
    return out


def sample_negatives(log: Interactions, users: np.ndarray, k: int,
                     probabilities: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """(len(users), k) distinct items drawn from ``probabilities``, none in the user's log.

    Vectorised rejection: all cells are drawn at once; cells holding an item of the user or a
    repeat within the row are redrawn together, until none is left. A user without ``k``
    drawable items left is a one-line error.
    """
    users = np.asarray(users, dtype=np.int64)
    width = log.n_items + 1
    keys = _user_item_keys(log)
    drawable = probabilities > 0
    own = np.bincount(keys[drawable[keys % width]] // width, minlength=log.n_users)
    short = np.flatnonzero(int(drawable.sum()) - own[users] < k)
    if len(short):
        raise ProtocolError(f"ctr: user {log.user_tokens[users[short[0]]]} (and "
                            f"{len(short) - 1} more) has fewer than {k} items left to draw as "
                            "negatives; lower protocol.ctr.negatives")
    cumulative = np.cumsum(probabilities)
    last = int(np.flatnonzero(drawable)[-1])

    def draw(size: int | tuple[int, int]) -> np.ndarray:
        return np.minimum(np.searchsorted(cumulative, rng.random(size), side="right"), last)

    negatives = draw((len(users), k))
    while True:
        cell_keys = users[:, None] * width + negatives
        found = np.searchsorted(keys, cell_keys).clip(max=len(keys) - 1)
        bad = (keys[found] == cell_keys) | _duplicates(negatives)
        if not bad.any():
            return negatives
        negatives[bad] = draw(int(bad.sum()))


def eligible_users(log: Interactions, split: str) -> np.ndarray:
    """Users with enough interactions: 2 (``users``: a target and a history) or 4 (``last``:
    a training target with a history, a valid and a test target)."""
    return np.flatnonzero(log.lengths >= (2 if split == "users" else 4))


def partition_users(users: np.ndarray, test_share: float, valid_share: float,
                    seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(train, valid, test) users, each sorted: a seeded permutation of ``users`` cut into
    ``round(test_share n)`` test, ``round(valid_share n)`` valid and the rest train users."""
    order = np.random.default_rng([seed, STREAMS["partition"]]).permutation(users)
    n_test = int(round(test_share * len(users)))
    n_valid = int(round(valid_share * len(users)))
    test, valid, train = np.split(order, [n_test, n_test + n_valid])
    return np.sort(train), np.sort(valid), np.sort(test)


def _part(log: Interactions, users: np.ndarray, rows: np.ndarray, k: int,
          probabilities: np.ndarray, seed: int, stream: str) -> CTRPart:
    rng = np.random.default_rng([seed, STREAMS[stream]])
    return CTRPart(users=users, rows=rows,
                   negatives=sample_negatives(log, users, k, probabilities, rng))


def build_samples(log: Interactions, config: CTRConfig, seed: int,
                  eval_log: Interactions | None = None) -> CTRSamples:
    """The CTR samples of ``log`` (spec §1; see the module docstring).

    With ``eval_log`` (the clean log of which ``log`` is a noise-injected copy, same users),
    training samples come from ``log`` and valid/test samples from ``eval_log``; the users are
    partitioned on ``eval_log``. Negatives exclude the items of the log their sample comes from.
    """
    clean = log if eval_log is None else eval_log
    if clean.n_users != log.n_users:
        raise ProtocolError("the evaluation log must have the same users as the training log")
    users = eligible_users(clean, config.split)
    if len(users) == 0:
        need = 2 if config.split == "users" else 4
        raise ProtocolError(f"{log.name}: no user has the {need} interactions a CTR sample "
                            f"needs (protocol.ctr.split={config.split})")
    starts, ends = log.offsets[:-1], log.offsets[1:]
    clean_ends = clean.offsets[1:]
    train_end = starts.copy()
    if config.split == "users":
        train_users, valid_users, test_users = partition_users(
            users, config.test_share, config.valid_share, seed)
        train_users = train_users[log.lengths[train_users] >= 2]
        train_rows, valid_rows, test_rows = (ends[train_users] - 1, clean_ends[valid_users] - 1,
                                             clean_ends[test_users] - 1)
        train_end[train_users] = ends[train_users]
    else:
        train_users = valid_users = test_users = users
        train_end[users] = ends[users] - 2
        train_rows, valid_rows, test_rows = (ends[users] - 3, clean_ends[users] - 2,
                                             clean_ends[users] - 1)
    misaligned = config.sampler == "pop075_idmisaligned"
    train_p = negative_distribution(log, config.exponent, misaligned)
    eval_p = train_p if eval_log is None else negative_distribution(clean, config.exponent,
                                                                    misaligned)
    return CTRSamples(
        train=_part(log, train_users, train_rows, config.train_negatives, train_p, seed,
                    "train"),
        valid=_part(clean, valid_users, valid_rows, config.negatives, eval_p, seed, "valid"),
        test=_part(clean, test_users, test_rows, config.negatives, eval_p, seed, "test"),
        train_end=train_end)
