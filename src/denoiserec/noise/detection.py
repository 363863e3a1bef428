"""How well per-interaction noise scores find the injected noise.

Every function takes two 1-D arrays of equal length ``n``: ``scores`` (float, **higher = more
likely noise**) and ``labels`` (bool, ``True`` = an injected noisy interaction). Let ``P`` be the
number of noisy and ``N`` the number of clean interactions.

* **ROC-AUC** is the probability that a random noisy interaction scores higher than a random
  clean one, a tie counting 1/2::

      AUC = (#{s_noisy > s_clean} + 1/2 #{s_noisy == s_clean}) / (P N)

  computed in O(n log n) as the Mann–Whitney U statistic with average ranks:
  ``U = sum(rank of noisy) - P (P + 1) / 2`` and ``AUC = U / (P N)``, where tied scores all get
  the mean of the ranks they span.
* **PR-AUC** is the step-wise average precision ``AP = sum_k (R_k - R_{k-1}) P_k`` over the
  distinct score thresholds in descending order, where ``P_k`` and ``R_k`` are the precision and
  recall of flagging every interaction scoring ``>= threshold_k`` (``R_0 = 0``). Tied scores form
  **one** threshold: they enter together, so a tie between a noisy and a clean interaction is
  neither rewarded nor punished by the order they happen to be stored in. This is the quantity
  scikit-learn's ``average_precision_score`` computes (no interpolation, no trapezoids).
* **Precision / recall / F1 at k** flag the ``k`` highest scores; the default ``k = P`` flags as
  many interactions as were injected ("at the injected ratio"), where precision equals recall.
  Ties at the cut are broken by **position**: among equal scores the earlier index is flagged
  first (a stable sort on descending score). So constant scores flag the first ``k`` rows.

Both AUCs are undefined when the labels are all ``True`` or all ``False``; that, a length
mismatch, NaN scores or non-binary labels raise ``ValueError``. Infinite scores are allowed
(they only need to be ordered).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class DetectionAtK:
    """Detection quality when the ``k`` highest-scoring interactions are flagged as noise.

    Attributes:
        k: Number of interactions flagged.
        precision: Fraction of the flagged interactions that are noisy (TP / k).
        recall: Fraction of the noisy interactions that are flagged (TP / P).
        f1: Harmonic mean of precision and recall (0 when both are 0).
    """

    k: int
    precision: float
    recall: float
    f1: float


def _validate(scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Check and convert the inputs to (float64 scores, bool labels), raising ``ValueError``."""
    scores = np.asarray(scores, dtype=np.float64)
    labels = np.asarray(labels)
    if scores.ndim != 1 or labels.ndim != 1:
        raise ValueError(f"scores and labels must be 1-D, got shapes {scores.shape} and "
                         f"{labels.shape}")
    if scores.shape[0] != labels.shape[0]:
        raise ValueError(f"scores and labels must have equal length, got {scores.shape[0]} "
                         f"scores and {labels.shape[0]} labels")
    if np.isnan(scores).any():
        raise ValueError(f"scores contain {int(np.isnan(scores).sum())} NaN value(s); "
                         "every interaction needs a comparable score")
    if labels.dtype != np.bool_:
        if labels.size and not np.isin(labels, (0, 1)).all():
            raise ValueError("labels must be boolean (True = noise) or 0/1, got values "
                             f"{np.unique(labels)[:5].tolist()}")
        labels = labels.astype(bool)
    n_noisy = int(labels.sum())
    if n_noisy == 0 or n_noisy == labels.shape[0]:
        kind = "False (clean)" if n_noisy == 0 else "True (noisy)"
        raise ValueError(f"labels are all {kind} for {labels.shape[0]} interactions; "
                         "detection quality needs both noisy and clean ones")
    return scores, labels


def roc_auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """ROC-AUC: P(score of a random noisy > score of a random clean), ties counting 1/2.

    Args:
        scores: (n,) noise scores, higher = more likely noise.
        labels: (n,) True for injected noise.

    Returns:
        The Mann–Whitney U statistic over ``P * N``, in [0, 1]; 0.5 is chance level.

    Raises:
        ValueError: On a length mismatch, NaN scores, or labels all True / all False.
    """
    scores, labels = _validate(scores, labels)
    distinct, group, counts = np.unique(scores, return_inverse=True, return_counts=True)
    # Average 1-based rank of each group of tied scores: its last rank minus (count - 1) / 2.
    group_rank = np.cumsum(counts) - (counts - 1) / 2.0
    n_noisy = int(labels.sum())
    n_clean = labels.shape[0] - n_noisy
    u_statistic = group_rank[group][labels].sum() - n_noisy * (n_noisy + 1) / 2.0
    return float(u_statistic / (n_noisy * n_clean))


def pr_auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Average precision: ``sum_k (R_k - R_{k-1}) P_k`` over distinct thresholds, descending.

    All interactions sharing a score enter at the same threshold (see the module docstring).

    Args:
        scores: (n,) noise scores, higher = more likely noise.
        labels: (n,) True for injected noise.

    Returns:
        Average precision in (0, 1]; a random scorer gets about the noise ratio.

    Raises:
        ValueError: On a length mismatch, NaN scores, or labels all True / all False.
    """
    scores, labels = _validate(scores, labels)
    # np.unique sorts ascending; negating gives the thresholds in descending score order.
    _, group, counts = np.unique(-scores, return_inverse=True, return_counts=True)
    noisy_per_threshold = np.bincount(group, weights=labels, minlength=counts.shape[0])
    true_positives = np.cumsum(noisy_per_threshold)
    precision = true_positives / np.cumsum(counts)
    recall_gain = noisy_per_threshold / labels.sum()  # R_k - R_{k-1}
    return float(np.sum(recall_gain * precision))


def precision_recall_f1_at(scores: np.ndarray, labels: np.ndarray,
                           k: int | None = None) -> DetectionAtK:
    """Precision, recall and F1 when the ``k`` highest scores are flagged as noise.

    Ties at the cut are broken by position: among equal scores the earlier index is flagged
    first (stable sort on descending score).

    Args:
        scores: (n,) noise scores, higher = more likely noise.
        labels: (n,) True for injected noise.
        k: How many interactions to flag, 1 <= k <= n. Default: the number of noisy labels
            (flag at the injected noise ratio).

    Returns:
        The ``DetectionAtK`` for this cut.

    Raises:
        ValueError: On a length mismatch, NaN scores, labels all True / all False, or ``k``
            outside [1, n].
    """
    scores, labels = _validate(scores, labels)
    n_noisy = int(labels.sum())
    k = n_noisy if k is None else int(k)
    if not 1 <= k <= labels.shape[0]:
        raise ValueError(f"k must be in [1, {labels.shape[0]}] (the number of interactions), "
                         f"got {k}")
    flagged = np.argsort(-scores, kind="stable")[:k]
    true_positives = int(labels[flagged].sum())
    precision = true_positives / k
    recall = true_positives / n_noisy
    f1 = 0.0 if true_positives == 0 else 2 * precision * recall / (precision + recall)
    return DetectionAtK(k=k, precision=precision, recall=recall, f1=f1)


def detection_report(scores: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """All detection numbers for one scorer, flagging at the injected ratio.

    Args:
        scores: (n,) noise scores, higher = more likely noise.
        labels: (n,) True for injected noise.

    Returns:
        ``{"roc_auc", "pr_auc", "precision@ratio", "recall@ratio", "f1@ratio", "noise_ratio",
        "n"}``; ``noise_ratio`` is the fraction of True labels and ``n`` (an int) the number
        of interactions.

    Raises:
        ValueError: On a length mismatch, NaN scores, or labels all True / all False.
    """
    scores, labels = _validate(scores, labels)
    at_ratio = precision_recall_f1_at(scores, labels)
    return {
        "roc_auc": roc_auc(scores, labels),
        "pr_auc": pr_auc(scores, labels),
        "precision@ratio": at_ratio.precision,
        "recall@ratio": at_ratio.recall,
        "f1@ratio": at_ratio.f1,
        "noise_ratio": float(labels.mean()),
        "n": int(labels.shape[0]),
    }
