"""Paired sign-flip permutation test against exact enumeration, and per-user metrics by hand."""

from __future__ import annotations

import itertools
import math
from fractions import Fraction

import numpy as np
import pytest

from denoiserec.noise.significance import PairedTest, paired_permutation_test, per_user_metric


def exact_sign_flip_p_value(differences: list[Fraction]) -> float:
    """Enumerate all 2^n sign patterns in exact arithmetic: share with |sum| >= |observed|."""
    observed = abs(sum(differences))
    patterns = list(itertools.product((-1, 1), repeat=len(differences)))
    extreme = sum(
        abs(sum(s * d for s, d in zip(signs, differences, strict=True))) >= observed
        for signs in patterns
    )
    return extreme / len(patterns)


def test_identical_systems_give_p_one_and_zero_difference() -> None:
    a = np.random.default_rng(0).random(50)
    result = paired_permutation_test(a, a.copy())
    assert result == PairedTest(mean_difference=0.0, p_value=1.0, n=50, ci_low=0.0, ci_high=0.0)


def test_constant_large_shift_on_200_users_is_significant() -> None:
    b = np.random.default_rng(1).random(200)
    result = paired_permutation_test(b + 0.5, b, n_permutations=2000)
    # d = 0.5 for everyone: only the all-(+1) and all-(-1) patterns reach |mean| = 0.5, and
    # drawing one of them has probability 2 / 2^200, so p = 1 / (1 + 2000).
    assert result.p_value < 0.01
    assert result.p_value == pytest.approx(1 / 2001)
    assert result.mean_difference == pytest.approx(0.5)
    assert (result.ci_low, result.ci_high) == pytest.approx((0.5, 0.5))


def test_noisy_shift_is_significant_and_interval_covers_it() -> None:
    rng = np.random.default_rng(2)
    b = rng.random(200)
    a = b + 0.2 + rng.normal(0.0, 0.3, size=200)
    result = paired_permutation_test(a, b)
    assert result.p_value < 0.01
    assert 0.0 < result.ci_low < result.mean_difference < result.ci_high


@pytest.mark.parametrize("differences, exact_by_hand", [
    # Observed sum 1 + 2 - 0.5 + 3 = 5.5. Only the patterns keeping +1, +2, +3 (the -0.5 either
    # way: 6.5 or 5.5) and their negations reach |sum| >= 5.5: p = 4/16 = 0.25.
    (["1", "2", "-0.5", "3"], 0.25),
    # In tenths: observed 1 + 2 - 3 + 4 = 4. The 16 values of +-1 +-2 +-3 +-4 are
    # 10, 8, 6, 4, 4, 2, 2, 0, 0, -2, -2, -4, -4, -6, -8, -10; ten have |sum| >= 4, four of them
    # tie it exactly (in floats only up to rounding): p = 10/16 = 0.625.
    (["0.1", "0.2", "-0.3", "0.4"], 0.625),
])
def test_tiny_case_matches_exact_enumeration(differences: list[str],
                                             exact_by_hand: float) -> None:
    exact = exact_sign_flip_p_value([Fraction(d) for d in differences])
    assert exact == pytest.approx(exact_by_hand)
    b = np.array([0.3, 0.1, 0.7, 0.2])
    a = b + np.array([float(d) for d in differences])
    n_permutations = 200_000
    result = paired_permutation_test(a, b, n_permutations=n_permutations)
    # Monte-Carlo standard error sqrt(p (1 - p) / 200000) <= 0.0012; allow about 4 of them.
    assert abs(result.p_value - exact) < 0.005
    assert result.n == 4


def test_same_seed_same_result_different_seed_different_draws() -> None:
    rng = np.random.default_rng(3)
    a, b = rng.random(80), rng.random(80)
    first = paired_permutation_test(a, b, n_permutations=3000, seed=5)
    assert paired_permutation_test(a, b, n_permutations=3000, seed=5) == first
    other = paired_permutation_test(a, b, n_permutations=3000, seed=6)
    assert other.mean_difference == first.mean_difference
    assert (other.p_value, other.ci_low) != (first.p_value, first.ci_low)


@pytest.mark.parametrize("a, b, n_permutations, message", [
    (np.zeros(3), np.zeros(4), 10, "same users"),
    (np.zeros(0), np.zeros(0), 10, "empty"),
    (np.array([0.1, np.nan]), np.zeros(2), 10, "finite"),
    (np.zeros(3), np.zeros(3), 0, "n_permutations"),
])
def test_bad_pairs_raise_value_error(a, b, n_permutations: int, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        paired_permutation_test(a, b, n_permutations=n_permutations)


def test_per_user_metric_by_hand() -> None:
    ranks = np.array([1, 2, 3, 10, 11])
    # ndcg@10: 1/log2(2) = 1, 1/log2(3), 1/log2(4) = 0.5, 1/log2(11), rank 11 > 10 -> 0.
    expected_ndcg = [1.0, 1 / math.log2(3), 0.5, 1 / math.log2(11), 0.0]
    assert per_user_metric(ranks, k=10) == pytest.approx(expected_ndcg)
    assert per_user_metric(ranks, k=10, metric="hit") == pytest.approx([1, 1, 1, 1, 0])
    assert per_user_metric(ranks, k=10, metric="mrr") == pytest.approx([1, 0.5, 1 / 3, 0.1, 0])
    assert per_user_metric(ranks, k=2, metric="hit") == pytest.approx([1, 1, 0, 0, 0])


@pytest.mark.parametrize("ranks, k, metric, message", [
    (np.array([1, 2]), 10, "auc", "metric must be one of"),
    (np.array([1, 2]), 0, "ndcg", "k must be >= 1"),
    (np.array([0, 2]), 10, "ndcg", "1-based"),
])
def test_per_user_metric_bad_input(ranks: np.ndarray, k: int, metric: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        per_user_metric(ranks, k=k, metric=metric)
