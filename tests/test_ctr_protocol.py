"""The ``ctr`` protocol's metrics on hand-made 64-candidate lists (ATJT spec §2, §8.6).

Each expected value is computed by hand in the test: per-user AUC, the standard HR@5 / NDCG@5
(1/log2(rank + 1)), and the published code's variants (the 0.5 probability rule on HR, the
1/log2(r + 2) discount over an IDCG of five relevant slots on NDCG).
"""

from __future__ import annotations

import math

import pytest
import torch

from denoiserec.metrics import candidate_metrics, candidate_ranks, target_ranks

N_NEG = 63
TARGET_ID = 100  # above every negative id (1..63): a tie ranks the target after the negative


def _logit(p: float) -> float:
    return math.log(p / (1 - p))


def _list(p_target: float, higher: int, tied: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """(1, 64) scores (log-odds) and ids: the target first, ``higher`` negatives above it,
    ``tied`` equal to it, the rest below."""
    s = _logit(p_target)
    negatives = ([s + 1 + 0.01 * i for i in range(higher)] + [s] * tied
                 + [s - 1 - 0.01 * i for i in range(N_NEG - higher - tied)])
    scores = torch.tensor([[s, *negatives]], dtype=torch.float64)
    ids = torch.tensor([[TARGET_ID, *range(1, N_NEG + 1)]])
    return scores, ids


def _values(p: float, higher: int, tied: int = 0) -> dict[str, float]:
    scores, ids = _list(p, higher, tied)
    return {k: float(v[0]) for k, v in candidate_metrics(scores, ids, paper=True).items()}


def test_rank_one_confident():
    v = _values(0.7, higher=0)
    assert v["auc"] == 1.0 and v["hit@5"] == 1.0 and v["ndcg@5"] == 1.0
    assert v["hit@5_atjt"] == 1.0
    assert v["ndcg@5_atjt"] == pytest.approx(0.273762, abs=1e-6)  # spec §8.6
    idcg = 1 / math.log2(3) + 1 / math.log2(4) + 1 / math.log2(5) + 1 / math.log2(6) \
        + 1 / math.log2(7)
    assert v["ndcg@5_atjt"] == pytest.approx(1 / math.log2(3) / idcg, abs=1e-12)


def test_rank_one_unconfident_fails_only_the_paper_hit():
    v = _values(0.45, higher=0)
    assert v["hit@5"] == 1.0 and v["hit@5_atjt"] == 0.0  # HR needs p > 0.5 in the code
    assert v["ndcg@5_atjt"] == pytest.approx(0.273762, abs=1e-6)  # NDCG does not


def test_rank_three():
    v = _values(0.29, higher=2)
    assert v["auc"] == pytest.approx(61 / 63, abs=1e-12)  # spec: 0.9683
    assert v["hit@5"] == 1.0 and v["hit@1"] == 0.0
    assert v["ndcg@5"] == pytest.approx(1 / math.log2(4), abs=1e-12)  # 0.5
    assert v["mrr@5"] == pytest.approx(1 / 3, abs=1e-12)
    assert v["ndcg@5_atjt"] == pytest.approx(0.186872, abs=1e-6)
    assert v["hit@5_atjt"] == 0.0  # p = 0.29


def test_rank_six_is_outside_the_top_five():
    v = _values(0.9, higher=5)
    assert v["auc"] == pytest.approx(58 / 63, abs=1e-12)
    assert v["hit@5"] == 0.0 and v["ndcg@5"] == 0.0 and v["hit@10"] == 1.0
    assert v["ndcg@10"] == pytest.approx(1 / math.log2(7), abs=1e-12)
    assert v["hit@5_atjt"] == 0.0 and v["ndcg@5_atjt"] == 0.0


def test_ties():
    """A negative tied with the target: AUC counts it half; the standard rank puts the target
    after the tied lower id; the code's HR (which counted the hit twice) favours the target,
    capped at 1."""
    v = _values(0.9, higher=4, tied=1)
    assert v["auc"] == pytest.approx((58 + 0.5) / 63, abs=1e-12)
    assert v["hit@5"] == 0.0  # rank 6: 4 higher + 1 tied with a lower id
    assert v["hit@5_atjt"] == 1.0  # rank 5 with ties in its favour, p > 0.5
    assert v["ndcg@5_atjt"] == pytest.approx(1 / (math.log2(7) * 2.304666), abs=1e-6)
    scores, ids = _list(0.9, higher=4, tied=1)
    ids[0, 0] = 0  # the target now has the lowest id: it ranks before the tied negative
    assert int(candidate_ranks(scores, ids)[0]) == 5


def test_paper_variants_only_on_request():
    scores, ids = _list(0.7, 0)
    assert "hit@5_atjt" not in candidate_metrics(scores, ids)


def test_candidate_ranks_equal_full_ranking_with_the_rest_excluded():
    """Naive: put the candidates' scores into a full score row (-inf elsewhere) and rank with
    the repository's full-ranking rule; both give the same rank, ties included."""
    g = torch.Generator().manual_seed(0)
    for _ in range(20):
        ids = torch.randperm(200, generator=g)[:64][None, :] + 1
        scores = torch.randint(0, 8, (1, 64), generator=g).double()  # many ties
        full = torch.full((1, 202), -torch.inf, dtype=torch.float64)
        full[0, ids[0]] = scores[0]
        assert int(candidate_ranks(scores, ids)[0]) == int(target_ranks(full, ids[:, 0])[0])
