"""Evaluation under a protocol: score every rankable item, rank the target, average metrics.

Large catalogues (``item_chunk``): the items are scored ``item_chunk`` at a time from one
sequence representation per instance batch, and each chunk's top K (K = the largest metric
cutoff) is merged into a running top K, ordered by score and then by item id, so memory is
(batch x chunk) whatever the catalogue. A target inside the merged top K gets its exact rank
under the ``id`` tie rule (for both tie rules: equal scores rank by id); one outside it gets
K + 1, which every @K metric counts as a miss, as the ``topk`` rule already does.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

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


def merge_top(values: torch.Tensor, ids: torch.Tensor, k: int
              ) -> tuple[torch.Tensor, torch.Tensor]:
    """The first ``k`` of each row of (B, n) ``values`` / ``ids`` ordered by value (highest
    first), equal values by id (lowest first)."""
    order = torch.argsort(ids, dim=1, stable=True)
    values, ids = values.gather(1, order), ids.gather(1, order)
    order = torch.argsort(values, dim=1, descending=True, stable=True)[:, :k]
    return values.gather(1, order), ids.gather(1, order)


def chunk_top(scores: torch.Tensor, first: int, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The top ``k`` (values, item ids) of a (B, C) chunk of items ``first ..``, in the order of
    :func:`merge_top`: ``torch.topk``, redone by a stable sort on rows whose k-th value is tied
    with a column it left out (topk may leave out a lower id)."""
    k = min(k, scores.shape[1])
    values, columns = torch.topk(scores, k, dim=1)
    kth = values[:, -1:]
    cut = ((scores == kth).sum(1) > (values == kth).sum(1)).nonzero().squeeze(1)
    if len(cut):
        order = torch.argsort(scores[cut], dim=1, descending=True, stable=True)[:, :k]
        columns[cut], values[cut] = order, scores[cut].gather(1, order)
    return merge_top(values, columns + first, k)


def chunked_ranks(scorer: Callable[[int, int], torch.Tensor], n_columns: int, item_chunk: int,
                  k: int, target_items: torch.Tensor,
                  exclude: Callable[..., torch.Tensor]) -> torch.Tensor:
    """(B,) ranks of ``target_items`` among items ``0 .. n_columns - 1`` scored by
    ``scorer(first, stop)`` chunk by chunk, after ``exclude(scores, first=first)``; K + 1 outside
    the top ``k`` (see the module docstring)."""
    top_values = top_ids = None
    for first in range(0, n_columns, item_chunk):
        scores = exclude(scorer(first, min(first + item_chunk, n_columns)).float(),
                         first=first)
        values, ids = chunk_top(scores, first, k)
        if top_values is not None:
            values, ids = merge_top(torch.cat([top_values, values], 1),
                                    torch.cat([top_ids, ids], 1), k)
        top_values, top_ids = values, ids
    found = top_ids == target_items[:, None]
    return torch.where(found.any(1), found.float().argmax(1) + 1, k + 1)


@torch.no_grad()
def evaluate(model: SequentialRecommender, batcher: Batcher, eval_set: EvalSet,
             protocol: ProtocolConfig, batch_size: int = 4096,
             ks: tuple[int, ...] = DEFAULT_KS, item_chunk: int = 0) -> Evaluation:
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
        negatives = None if negatives_all is None else negatives_all[chunk]
        exclude = partial(rules.exclude_unrankable, log_items=batcher.items,
                          starts=batcher.starts[users], targets=targets,
                          target_items=batch.targets, negatives=negatives)
        if 0 < item_chunk < batcher.n_items + 1:
            ranks.append(chunked_ranks(model.item_scorer(batch), batcher.n_items + 1,
                                       item_chunk, max(ks), batch.targets, exclude))
        else:
            scores = exclude(model.score_all(batch).float(), first=0)
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
