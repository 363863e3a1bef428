"""Is system A better than system B on the same users? A paired sign-flip permutation test.

Given per-user metric values ``a`` and ``b`` (same users, same order), the differences
``d = a - b`` are tested against the null hypothesis that A and B are exchangeable for every
user, i.e. that each ``d_u`` is as likely to be ``+d_u`` as ``-d_u``. Under that null, flipping
random signs ``s_u`` in {-1, +1} gives another equally likely outcome, so the two-sided p-value is
estimated by Monte Carlo as::

    p = (1 + #{ |mean(s * d)| >= |mean(d)| }) / (1 + n_permutations)

The ``+1`` counts the observed sign pattern itself, so ``p`` is never 0 and the test stays valid
(its size never exceeds the nominal level) with any number of permutations. Flipped means within
floating-point rounding of the observed one count as "at least as extreme".

Why a permutation test: per-user NDCG or hit values are bounded, discrete and heavily skewed
(most users score 0), so the normality behind a paired t-test does not hold; the randomisation
test needs no distributional assumption beyond exchangeability, and needs nothing but numpy (no
scipy). The 95 % confidence interval of the mean difference is a percentile bootstrap over users
with the same number of resamples as permutations.

``per_user_metric`` turns 1-based target ranks into the per-user values the test compares,
with the definitions of ``denoiserec.metrics``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from denoiserec.metrics import METRIC_NAMES, metric_values

# Rows of random signs (or resampled users) drawn at once: at most 1000, and at most about
# 2**22 numbers (32 MiB of float64) per chunk however many users there are.
_MAX_CHUNK_ROWS = 1000
_MAX_CHUNK_ELEMENTS = 2**22


@dataclass(frozen=True)
class PairedTest:
    """Result of comparing system A with system B on the same users.

    Attributes:
        mean_difference: mean(a - b); positive means A scores higher.
        p_value: Two-sided sign-flip permutation p-value, in (0, 1].
        n: Number of paired users.
        ci_low: Lower end of the 95 % percentile-bootstrap interval of ``mean_difference``.
        ci_high: Upper end of that interval.
    """

    mean_difference: float
    p_value: float
    n: int
    ci_low: float
    ci_high: float


def _chunk_rows(n_users: int, n_rows: int) -> int:
    """How many permutation (or bootstrap) rows to draw at once for ``n_users`` columns."""
    return max(1, min(_MAX_CHUNK_ROWS, n_rows, _MAX_CHUNK_ELEMENTS // n_users))


def _validate_pair(a: np.ndarray, b: np.ndarray, n_permutations: int) -> np.ndarray:
    """Check the inputs and return the differences ``a - b`` as float64."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.ndim != 1 or b.ndim != 1:
        raise ValueError(f"a and b must be 1-D per-user values, got shapes {a.shape} and "
                         f"{b.shape}")
    if a.shape[0] != b.shape[0]:
        raise ValueError(f"a and b must pair the same users, got {a.shape[0]} and "
                         f"{b.shape[0]} values")
    if a.shape[0] == 0:
        raise ValueError("a and b are empty; a paired test needs at least one user")
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        raise ValueError("a and b must be finite (no NaN or inf per-user values)")
    if n_permutations < 1:
        raise ValueError(f"n_permutations must be >= 1, got {n_permutations}")
    return a - b


def _sign_flip_p_value(differences: np.ndarray, n_permutations: int,
                       rng: np.random.Generator) -> float:
    """Monte-Carlo two-sided sign-flip p-value of the mean of ``differences``."""
    n_users = differences.shape[0]
    observed = abs(differences.sum())  # comparing sums is comparing means: same n
    # Matrix products sum in another order than .sum(); allow for that rounding.
    tolerance = 1e-12 * np.abs(differences).sum()
    at_least_as_extreme = 0
    done = 0
    while done < n_permutations:
        rows = _chunk_rows(n_users, n_permutations - done)
        signs = np.where(rng.random((rows, n_users)) < 0.5, -1.0, 1.0)  # (rows, n_users)
        flipped = np.abs(signs @ differences)  # (rows,)
        at_least_as_extreme += int(np.count_nonzero(flipped >= observed - tolerance))
        done += rows
    return (1 + at_least_as_extreme) / (1 + n_permutations)


def _bootstrap_interval(differences: np.ndarray, n_resamples: int,
                        rng: np.random.Generator) -> tuple[float, float]:
    """95 % percentile-bootstrap interval of the mean of ``differences`` over users."""
    n_users = differences.shape[0]
    means = np.empty(n_resamples)
    done = 0
    while done < n_resamples:
        rows = _chunk_rows(n_users, n_resamples - done)
        resampled = rng.integers(0, n_users, size=(rows, n_users))  # (rows, n_users)
        means[done:done + rows] = differences[resampled].mean(axis=1)
        done += rows
    low, high = np.percentile(means, [2.5, 97.5])
    return float(low), float(high)


def paired_permutation_test(a: np.ndarray, b: np.ndarray, n_permutations: int = 10000,
                            seed: int = 0) -> PairedTest:
    """Two-sided sign-flip permutation test of mean(a - b) = 0, with a bootstrap 95 % CI.

    Args:
        a: (n,) per-user metric values of system A.
        b: (n,) per-user metric values of system B, same users in the same order.
        n_permutations: Random sign patterns drawn; also the number of bootstrap resamples.
        seed: Seeds a private generator (no global RNG is touched); the permutation and the
            bootstrap streams are independent children of ``numpy.random.SeedSequence(seed)``.

    Returns:
        The ``PairedTest``. When every difference is 0, ``p_value`` is exactly 1 and the
        interval is (0, 0).

    Raises:
        ValueError: On shape mismatch, empty or non-finite input, or ``n_permutations < 1``.
    """
    differences = _validate_pair(a, b, n_permutations)
    n_users = differences.shape[0]
    mean_difference = float(differences.mean())
    if not differences.any():
        return PairedTest(mean_difference=0.0, p_value=1.0, n=n_users, ci_low=0.0, ci_high=0.0)
    permutation_seed, bootstrap_seed = np.random.SeedSequence(seed).spawn(2)
    p_value = _sign_flip_p_value(differences, n_permutations,
                                 np.random.default_rng(permutation_seed))
    ci_low, ci_high = _bootstrap_interval(differences, n_permutations,
                                          np.random.default_rng(bootstrap_seed))
    return PairedTest(mean_difference=mean_difference, p_value=p_value, n=n_users,
                      ci_low=ci_low, ci_high=ci_high)


def per_user_metric(ranks: np.ndarray, k: int = 10, metric: str = "ndcg") -> np.ndarray:
    """Per-instance metric values from 1-based target ranks (one relevant item each).

    ndcg: ``1 / log2(rank + 1)``; hit: ``1``; mrr: ``1 / rank``; each when ``rank <= k``,
    else 0 (as in ``denoiserec.metrics``).

    Args:
        ranks: (n,) integer ranks of the target item, 1 = best.
        k: Cut-off, >= 1.
        metric: One of ``"ndcg"``, ``"hit"``, ``"mrr"``.

    Returns:
        (n,) float64 values, ready for ``paired_permutation_test``.

    Raises:
        ValueError: On an unknown metric, ``k < 1``, or ranks below 1.
    """
    if metric not in METRIC_NAMES:
        raise ValueError(f"metric must be one of {METRIC_NAMES}, got '{metric}'")
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    ranks = np.asarray(ranks, dtype=np.float64)
    if ranks.size and not ranks.min() >= 1:  # also rejects NaN
        raise ValueError(f"ranks are 1-based and must be >= 1, got minimum {ranks.min()}")
    values = metric_values(torch.from_numpy(ranks), ks=(k,))  # the one metric formula
    return values[f"{metric}@{k}"].numpy()
