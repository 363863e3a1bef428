"""Ranking metrics from scores: Hit@K, NDCG@K, MRR@K with one relevant item per instance.

Rank of the target (1 = best) among the rankable columns (excluded columns carry ``-inf``):

* ``ties="id"`` (default): ``1 + #(score > target) + #(score == target and id < target id)``,
  i.e. among equal scores the lower item id ranks first. Deterministic on every device.
* ``ties="topk"``: the target's position in ``torch.topk(scores, max_k)``, exactly RecBole
  1.2.1's evaluator. ``torch.topk`` leaves the order of equal scores to the implementation (on
  CPU it is not the id order), so two equal scores may come out either way. Without ties both
  rules give the same rank.

Hit@K = 1[rank <= K]; MRR@K = 1/rank if rank <= K; NDCG@K = 1/log2(rank + 1) if rank <= K
(IDCG = 1). Means over instances; nothing is rounded here.
"""

from __future__ import annotations

import math

import torch

DEFAULT_KS = (1, 5, 10, 20)
METRIC_NAMES = ("hit", "ndcg", "mrr")
TIE_RULES = ("id", "topk")


def target_ranks(scores: torch.Tensor, targets: torch.Tensor, ties: str = "id",
                 max_k: int = max(DEFAULT_KS)) -> torch.Tensor:
    """(B,) rank of ``targets`` in each row of ``scores`` (B, C).

    With ``ties="topk"`` a target outside the top ``max_k`` gets rank ``max_k + 1`` (its exact
    rank is not needed for @K metrics with K <= max_k).
    """
    target_scores = scores.gather(1, targets[:, None])
    if ties == "id":
        ranks = 1 + (scores > target_scores).sum(1)
        tied = ((scores == target_scores).sum(1) > 1).nonzero().squeeze(1)
        if len(tied):  # rare: count the tied items with lower ids in those rows only
            columns = torch.arange(scores.shape[1], device=scores.device)
            ranks[tied] += ((scores[tied] == target_scores[tied])
                            & (columns[None, :] < targets[tied, None])).sum(1)
        return ranks
    if ties == "topk":
        top = torch.topk(scores, min(max_k, scores.shape[1]), dim=1).indices
        found = top == targets[:, None]
        position = found.float().argmax(1) + 1
        return torch.where(found.any(1), position, torch.full_like(position, max_k + 1))
    raise ValueError(f"ties must be one of {TIE_RULES}, got '{ties}'")


def metric_values(ranks: torch.Tensor, ks: tuple[int, ...] = DEFAULT_KS) -> dict[str, torch.Tensor]:
    """Per-instance metric values from ranks: {'hit@10': (B,), 'ndcg@10': (B,), ...}."""
    ranks = ranks.double()
    values: dict[str, torch.Tensor] = {}
    for k in ks:
        inside = ranks <= k
        values[f"hit@{k}"] = inside.double()
        values[f"ndcg@{k}"] = torch.where(inside, 1.0 / torch.log2(ranks + 1), 0.0)
        values[f"mrr@{k}"] = torch.where(inside, 1.0 / ranks, 0.0)
    return values


def summarize(values: dict[str, torch.Tensor]) -> dict[str, float]:
    """Mean of each per-instance metric."""
    return {name: float(v.mean()) for name, v in values.items()}


# -- the ctr protocol: a target among sampled candidates (ATJT spec §2) ------------------------
ATJT_IDCG5 = sum(1.0 / math.log2(r + 2) for r in range(1, 6))  # 2.304666: five "relevant" slots


def candidate_ranks(scores: torch.Tensor, candidates: torch.Tensor) -> torch.Tensor:
    """(B,) rank of column 0 (the target) among the candidates of each row, by the ``id`` rule
    above: 1 + #(higher score) + #(equal score and lower item id)."""
    target, others = scores[:, :1], scores[:, 1:]
    lower_id = candidates[:, 1:] < candidates[:, :1]
    return 1 + (others > target).sum(1) + ((others == target) & lower_id).sum(1)


def candidate_metrics(scores: torch.Tensor, candidates: torch.Tensor,
                      ks: tuple[int, ...] = DEFAULT_KS,
                      paper: bool = False) -> dict[str, torch.Tensor]:
    """Per-instance metrics of the ``ctr`` protocol (ATJT spec §2); column 0 is the target.

    Standard definitions: ``auc`` = (#negatives scored below the target + 0.5 #ties) / #negatives
    (per user, averaged uniformly over users: the code's per-user AUC); Hit/NDCG/MRR@K from the
    rank of :func:`candidate_ranks` with NDCG = 1/log2(rank + 1).

    ``paper`` adds the published code's variants, labelled ``_atjt``: ``hit@5_atjt`` = rank <= 5
    **and** click probability sigmoid(score) > 0.5 (scores of CTR models are log-odds); the
    code's tie case that counts a hit twice is fixed (ties favour the target, capped at 1);
    ``ndcg@5_atjt`` = 1[r <= 5] / (log2(r + 2) * 2.304666), the code's shifted discount and its
    IDCG of five relevant items (maximum 0.2738), r also with ties favouring the target.
    """
    target, others = scores[:, :1], scores[:, 1:]
    below = (others < target).double().sum(1) + 0.5 * (others == target).double().sum(1)
    values = {"auc": below / others.shape[1],
              **metric_values(candidate_ranks(scores, candidates), ks)}
    if paper:
        optimistic = (1 + (others > target).sum(1)).double()
        top5 = optimistic <= 5
        values["hit@5_atjt"] = (top5 & (torch.sigmoid(scores[:, 0]) > 0.5)).double()
        values["ndcg@5_atjt"] = torch.where(
            top5, 1.0 / (torch.log2(optimistic + 2) * ATJT_IDCG5), 0.0)
    return values
