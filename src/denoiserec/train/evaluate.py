"""Evaluation under a protocol: score every rankable item, rank the target, average metrics."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from denoiserec.data.batches import Batcher
from denoiserec.metrics import DEFAULT_KS, metric_values, summarize, target_ranks
from denoiserec.models.base import SequentialRecommender
from denoiserec.protocols import EvalSet, ProtocolConfig, exclude_unrankable


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
    ``protocol.ties``).

    Instances are processed in order of input length, so that each chunk is cut to its own
    longest input (on short-sequence logs such as Beauty most chunks are far shorter than
    ``max_len``); ranks are returned in the order of ``eval_set``.
    """
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
        scores = exclude_unrankable(
            scores, batcher.items, batcher.starts[users], targets, batch.targets, protocol,
            None if negatives_all is None else negatives_all[chunk])
        ranks.append(target_ranks(scores, batch.targets, ties=protocol.ties, max_k=max(ks)))
    model.train(was_training)
    rank_tensor = torch.empty_like(targets_all)
    rank_tensor[by_length] = torch.cat(ranks)
    return Evaluation(metrics=summarize(metric_values(rank_tensor, ks)),
                      ranks=rank_tensor.cpu().numpy(), users=eval_set.users,
                      protocol=protocol.name)
