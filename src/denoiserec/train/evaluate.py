"""Evaluation under a protocol: score every rankable item, rank the target, average metrics."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from denoiserec.data.batches import Batcher
from denoiserec.metrics import (
    DEFAULT_KS,
    candidate_metrics,
    candidate_ranks,
    metric_values,
    summarize,
    target_ranks,
)
from denoiserec.models.base import SequentialRecommender
from denoiserec.protocols import EvalSet, ProtocolConfig, protocol_of


@dataclass(frozen=True)
class Evaluation:
    """Metrics of one evaluation set.

    Attributes:
        metrics: mean of each metric (``hit@10``, ``ndcg@10``, ``mrr@10``, ...).
        ranks: (n,) rank of each instance's target (for per-user tests).
        users: (n,) user index of each instance.
        protocol: name of the protocol.
    """

    metrics: dict[str, float]
    ranks: np.ndarray
    users: np.ndarray
    protocol: str


@torch.no_grad()
def evaluate(model: SequentialRecommender, batcher: Batcher, eval_set: EvalSet,
             protocol: ProtocolConfig, batch_size: int = 4096,
             ks: tuple[int, ...] = DEFAULT_KS) -> Evaluation:
    """Rank every instance's target among the items ``protocol`` allows (ties broken by
    ``protocol.ties``); a protocol that scores fixed candidates (``ctr``) is evaluated by
    :func:`evaluate_candidates`.

    Instances are processed in order of input length, so that each chunk is cut to its own
    longest input (on short-sequence logs such as Beauty most chunks are far shorter than
    ``max_len``); ranks are returned in the order of ``eval_set``.
    """
    rules = protocol_of(protocol)
    if rules.scores_candidates:
        return evaluate_candidates(model, batcher, eval_set, protocol, batch_size, ks)
    was_training = model.training
    model.eval()
    device = batcher.device
    users_all = torch.as_tensor(eval_set.users, device=device)
    targets_all = torch.as_tensor(eval_set.targets, device=device)
    negatives_all = (None if eval_set.negatives is None
                     else torch.as_tensor(eval_set.negatives, device=device))
    input_lengths = (targets_all - batcher.starts[users_all]).clamp(max=batcher.max_len)
    by_length = torch.argsort(input_lengths, stable=True)
    ranks = []
    for start in range(0, len(eval_set), batch_size):
        chunk = by_length[start:start + batch_size]
        users, targets = users_all[chunk], targets_all[chunk]
        batch = batcher.prefix(users, targets)
        scores = model.score_all(batch).float()
        scores = rules.exclude_unrankable(
            scores, batcher.items, batcher.starts[users], targets, batch.targets,
            None if negatives_all is None else negatives_all[chunk])
        ranks.append(target_ranks(scores, batch.targets, ties=protocol.ties, max_k=max(ks)))
    model.train(was_training)
    rank_tensor = torch.empty_like(targets_all)
    rank_tensor[by_length] = torch.cat(ranks)
    return Evaluation(metrics=summarize(metric_values(rank_tensor, ks)),
                      ranks=rank_tensor.cpu().numpy(), users=eval_set.users,
                      protocol=protocol.name)


@torch.no_grad()
def evaluate_candidates(model: SequentialRecommender, batcher: Batcher, eval_set: EvalSet,
                        protocol: ProtocolConfig, batch_size: int = 4096,
                        ks: tuple[int, ...] = DEFAULT_KS) -> Evaluation:
    """A candidate-scoring protocol (``ctr``, ATJT spec §2): each instance's target (column 0)
    and its sampled
    negatives scored by ``model.score_candidates`` in eval mode (the code never left train
    mode, spec §7.13), then :func:`~denoiserec.metrics.candidate_metrics` per instance.
    ``batch_size`` counts scored (instance, candidate) pairs."""
    if eval_set.negatives is None:
        raise ValueError("the ctr protocol's instances carry sampled negatives")
    was_training = model.training
    model.eval()
    device = batcher.device
    users_all = torch.as_tensor(eval_set.users, device=device)
    targets_all = torch.as_tensor(eval_set.targets, device=device)
    negatives_all = torch.as_tensor(eval_set.negatives, device=device)
    step = max(1, batch_size // (1 + negatives_all.shape[1]))
    values: list[dict[str, torch.Tensor]] = []
    ranks = []
    for start in range(0, len(eval_set), step):
        users, targets = users_all[start:start + step], targets_all[start:start + step]
        batch = batcher.prefix(users, targets)
        candidates = torch.cat([batch.targets[:, None], negatives_all[start:start + step]], 1)
        scores = model.score_candidates(batch, candidates).float()
        values.append(candidate_metrics(scores, candidates, ks, protocol.ctr.paper_metrics))
        ranks.append(candidate_ranks(scores, candidates))
    model.train(was_training)
    merged = {name: torch.cat([v[name] for v in values]) for name in values[0]}
    return Evaluation(metrics=summarize(merged), ranks=torch.cat(ranks).cpu().numpy(),
                      users=eval_set.users, protocol=protocol.name)
