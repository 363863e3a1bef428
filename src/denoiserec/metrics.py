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
