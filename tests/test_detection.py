"""Noise-detection metrics against hand-computed values and brute-force loops, with ties."""

from __future__ import annotations

import numpy as np
import pytest

from denoiserec.noise.detection import (
    DetectionAtK,
    detection_report,
    pr_auc,
    precision_recall_f1_at,
    roc_auc,
)

# The running example: two noisy (index 0 and 2) and two clean interactions, one noisy/clean tie.
SCORES = np.array([0.9, 0.8, 0.8, 0.1])
LABELS = np.array([True, False, True, False])


def brute_force_roc_auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Count every (noisy, clean) pair: 1 if the noisy one scores higher, 1/2 on a tie."""
    wins = 0.0
    pairs = 0
    for noisy_score in scores[labels]:
        for clean_score in scores[~labels]:
            pairs += 1
            if noisy_score > clean_score:
                wins += 1.0
            elif noisy_score == clean_score:
                wins += 0.5
    return wins / pairs


def brute_force_average_precision(scores: np.ndarray, labels: np.ndarray) -> float:
    """Loop over the distinct thresholds, descending; flag everything scoring >= threshold."""
    total = 0.0
    previous_recall = 0.0
    for threshold in sorted(set(scores.tolist()), reverse=True):
        flagged = scores >= threshold
        true_positives = int((flagged & labels).sum())
        precision = true_positives / int(flagged.sum())
        recall = true_positives / int(labels.sum())
        total += (recall - previous_recall) * precision
        previous_recall = recall
    return total


def random_tied_case(seed: int, n: int = 60) -> tuple[np.ndarray, np.ndarray]:
    """Scores on a 5-value grid (many ties) and about 30 % noisy labels, both classes present."""
    rng = np.random.default_rng(seed)
    scores = rng.integers(0, 5, size=n) / 4.0
    labels = rng.random(n) < 0.3
    labels[0], labels[1] = True, False
    return scores, labels


def test_roc_auc_by_hand_with_a_tie() -> None:
    # Pairs (noisy, clean): (0.9, 0.8) = 1, (0.9, 0.1) = 1, (0.8, 0.8) tie = 1/2, (0.8, 0.1) = 1.
    # ROC-AUC = (1 + 1 + 0.5 + 1) / 4 = 0.875
    assert roc_auc(SCORES, LABELS) == pytest.approx(0.875)


def test_roc_auc_extremes_and_all_tied() -> None:
    labels = np.array([True, True, False, False, False])
    assert roc_auc(np.array([5.0, 4, 3, 2, 1]), labels) == pytest.approx(1.0)
    assert roc_auc(np.array([1.0, 2, 3, 4, 5]), labels) == pytest.approx(0.0)
    # Every pair ties: 6 pairs * 1/2 / 6 = 0.5.
    assert roc_auc(np.full(5, 0.3), labels) == pytest.approx(0.5)


def test_pr_auc_by_hand_tied_items_enter_together() -> None:
    # Thresholds 0.9 -> {noisy}: P = 1/1, R = 1/2, gain 1/2 * 1 = 0.5
    #            0.8 -> + {clean, noisy}: P = 2/3, R = 2/2, gain 1/2 * 2/3 = 1/3
    #            0.1 -> + {clean}: R stays 1, gain 0.
    # AP = 0.5 + 1/3 = 0.8333...
    assert pr_auc(SCORES, LABELS) == pytest.approx(0.5 + 1 / 3)
    # Swapping the stored order of the tied pair changes nothing (a "favourable" order would
    # give 0.5 + 0.5 * 1 = 1.0, an "unfavourable" one 0.5 + 0.5 * 2/3 = 0.8333 only by luck).
    swapped = np.array([True, True, False, False])
    assert pr_auc(SCORES, swapped) == pytest.approx(0.5 + 1 / 3)


def test_pr_auc_all_tied_is_the_noise_ratio_and_perfect_is_one() -> None:
    labels = np.array([True, False, False, False, True])
    # One threshold: P = 2/5, R jumps 0 -> 1, AP = 2/5.
    assert pr_auc(np.zeros(5), labels) == pytest.approx(0.4)
    assert pr_auc(labels.astype(float), labels) == pytest.approx(1.0)
    # Worst order, scores = -label: threshold 0 flags the 3 clean (R stays 0, gain 0);
    # threshold -1 adds the 2 noisy: P = 2/5, R 0 -> 1, AP = 2/5.
    assert pr_auc(-labels.astype(float), labels) == pytest.approx(0.4)


@pytest.mark.parametrize("seed", range(20))
def test_auc_matches_brute_force_on_random_ties(seed: int) -> None:
    scores, labels = random_tied_case(seed)
    assert roc_auc(scores, labels) == pytest.approx(brute_force_roc_auc(scores, labels))
    assert pr_auc(scores, labels) == pytest.approx(brute_force_average_precision(scores, labels))


def test_auc_invariant_to_row_order_and_roc_flips_with_negated_scores() -> None:
    scores, labels = random_tied_case(seed=123, n=200)
    order = np.random.default_rng(7).permutation(scores.shape[0])
    assert roc_auc(scores[order], labels[order]) == pytest.approx(roc_auc(scores, labels))
    assert pr_auc(scores[order], labels[order]) == pytest.approx(pr_auc(scores, labels))
    assert roc_auc(-scores, labels) == pytest.approx(1.0 - roc_auc(scores, labels))


def test_precision_recall_f1_at_by_hand_ties_broken_by_position() -> None:
    scores = np.array([0.5, 0.9, 0.5, 0.5, 0.1])
    labels = np.array([False, True, False, True, False])
    # Stable descending order: index 1 (0.9), then the tied 0.5s as 0, 2, 3, then 4.
    # Default k = 2 noisy labels: flag {1, 0} -> TP = 1: P = 1/2, R = 1/2, F1 = 1/2.
    assert precision_recall_f1_at(scores, labels) == DetectionAtK(2, 0.5, 0.5, 0.5)
    # k = 1: flag {1}: P = 1, R = 1/2, F1 = 2 * 1 * 0.5 / 1.5 = 2/3.
    at_one = precision_recall_f1_at(scores, labels, k=1)
    assert (at_one.precision, at_one.recall, at_one.f1) == pytest.approx((1.0, 0.5, 2 / 3))
    # k = 4: flag {1, 0, 2, 3} -> TP = 2: P = 1/2, R = 1, F1 = 2 * 0.5 / 1.5 = 2/3.
    at_four = precision_recall_f1_at(scores, labels, k=4)
    assert (at_four.precision, at_four.recall, at_four.f1) == pytest.approx((0.5, 1.0, 2 / 3))
    # k = 5 flags all: P = 2/5, R = 1, F1 = 0.8 / 1.4 = 4/7.
    at_all = precision_recall_f1_at(scores, labels, k=5)
    assert (at_all.precision, at_all.recall, at_all.f1) == pytest.approx((0.4, 1.0, 4 / 7))


def test_precision_at_k_zero_hits_gives_zero_f1() -> None:
    labels = np.array([False, False, True])
    result = precision_recall_f1_at(np.array([3.0, 2.0, 1.0]), labels)
    assert result == DetectionAtK(k=1, precision=0.0, recall=0.0, f1=0.0)


def test_detection_report_by_hand() -> None:
    report = detection_report(SCORES, LABELS)
    # k = 2: stable order 0 (0.9, noisy), 1 (0.8, clean; ties with index 2 but comes first)
    # -> P = R = F1 = 1/2. AUCs from the hand computations above.
    assert report == pytest.approx({
        "roc_auc": 0.875, "pr_auc": 0.5 + 1 / 3, "precision@ratio": 0.5, "recall@ratio": 0.5,
        "f1@ratio": 0.5, "noise_ratio": 0.5, "n": 4,
    })


def test_integer_zero_one_labels_are_accepted() -> None:
    assert roc_auc(SCORES, LABELS.astype(int)) == pytest.approx(0.875)


@pytest.mark.parametrize("scores, labels, message", [
    (np.array([0.1, 0.2, 0.3]), np.array([True, False]), "equal length"),
    (np.array([0.1, np.nan]), np.array([True, False]), "NaN"),
    (np.array([0.1, 0.2]), np.array([True, True]), "all True"),
    (np.array([0.1, 0.2]), np.array([False, False]), "all False"),
    (np.array([0.1, 0.2]), np.array([0, 2]), "boolean"),
    (np.array([[0.1, 0.2]]), np.array([[True, False]]), "1-D"),
])
@pytest.mark.parametrize("function", [roc_auc, pr_auc, precision_recall_f1_at, detection_report])
def test_bad_input_raises_value_error(function, scores, labels, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        function(scores, labels)


@pytest.mark.parametrize("k", [0, 5])
def test_k_out_of_range_raises(k: int) -> None:
    with pytest.raises(ValueError, match=r"k must be in \[1, 4\]"):
        precision_recall_f1_at(SCORES, LABELS, k=k)
