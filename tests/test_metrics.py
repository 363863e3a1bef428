"""Metrics and protocol exclusions against brute-force Python, on random scores with ties."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from denoiserec.data.batches import Batcher
from denoiserec.metrics import metric_values, summarize, target_ranks
from denoiserec.protocols import ProtocolConfig, exclude_unrankable, split
from denoiserec.train.evaluate import evaluate

KS = (1, 5, 10, 20)


def brute_force_metrics(scores: np.ndarray, targets: np.ndarray, rankable: list[set[int]]):
    """Rank by (-score, item id) over the rankable items, written as plainly as possible."""
    totals = {f"{m}@{k}": 0.0 for m in ("hit", "ndcg", "mrr") for k in KS}
    for row, target in enumerate(targets):
        ordered = sorted(rankable[row], key=lambda item: (-scores[row, item], item))
        rank = ordered.index(int(target)) + 1
        for k in KS:
            if rank <= k:
                totals[f"hit@{k}"] += 1
                totals[f"ndcg@{k}"] += 1 / math.log2(rank + 1)
                totals[f"mrr@{k}"] += 1 / rank
    return {name: value / len(targets) for name, value in totals.items()}


def rankable_items(log, targets, users, protocol, negatives):
    out = []
    for j, (row, user) in enumerate(zip(targets, users, strict=True)):
        everything = set(range(1, log.n_items + 1))
        target_item = int(log.items[row])
        if protocol == "recbole":
            out.append(everything)
        elif protocol == "fmlp":
            history = {int(i) for i in log.items[log.offsets[user]:row]}
            out.append((everything - history) | {target_item})
        else:
            out.append({int(i) for i in negatives[j]} | {target_item})
    return out


@pytest.mark.parametrize("protocol", ["recbole", "fmlp", "sampled"])
@pytest.mark.parametrize("levels", [3, 1000])  # few distinct values = many ties
def test_metrics_equal_brute_force_per_protocol(random_log, protocol, levels):
    config = ProtocolConfig(name=protocol, n_negatives=9)
    parts = split(random_log, config)
    generator = torch.Generator().manual_seed(levels)
    for eval_set in (parts.valid, parts.test):
        n = len(eval_set)
        scores = torch.randint(0, levels, (n, random_log.n_items + 1), generator=generator)
        scores = scores.float()
        targets = torch.as_tensor(random_log.items[eval_set.targets])
        negatives = None if eval_set.negatives is None else torch.as_tensor(eval_set.negatives)
        starts = torch.as_tensor(random_log.offsets[eval_set.users])
        masked = exclude_unrankable(scores.clone(), torch.tensor(random_log.items), starts,
                                    torch.as_tensor(eval_set.targets), targets, config, negatives)
        ours = summarize(metric_values(target_ranks(masked, targets), KS))
        expected = brute_force_metrics(
            scores.numpy(), targets.numpy(),
            rankable_items(random_log, eval_set.targets, eval_set.users, protocol,
                           eval_set.negatives))
        assert ours == pytest.approx(expected, abs=1e-12)


def test_rank_rules_agree_with_topk_without_ties():
    generator = torch.Generator().manual_seed(0)
    scores = torch.rand(64, 500, generator=generator)  # continuous: no ties
    scores[:, 0] = -torch.inf
    targets = torch.randint(1, 500, (64,), generator=generator)
    by_id = target_ranks(scores, targets, ties="id")
    by_topk = target_ranks(scores, targets, ties="topk", max_k=20)
    inside = by_id <= 20
    assert torch.equal(by_id[inside], by_topk[inside])
    assert bool((by_topk[~inside] == 21).all())


def test_topk_rule_stays_within_tie_bounds():
    scores = torch.zeros(4, 50)  # everything tied
    scores[:, 0] = -torch.inf
    targets = torch.tensor([1, 7, 30, 49])
    ranks = target_ranks(scores, targets, ties="topk", max_k=60)
    assert bool(((ranks >= 1) & (ranks <= 49)).all())
    assert target_ranks(scores, targets, ties="id").tolist() == [1, 7, 30, 49]


def test_metric_values_by_hand():
    values = summarize(metric_values(torch.tensor([1, 2, 11]), ks=(1, 10)))
    assert values["hit@1"] == pytest.approx(1 / 3)
    assert values["hit@10"] == pytest.approx(2 / 3)
    assert values["ndcg@10"] == pytest.approx((1 + 1 / math.log2(3)) / 3)
    assert values["mrr@10"] == pytest.approx((1 + 0.5) / 3)
    assert values["mrr@1"] == pytest.approx(1 / 3)


def test_sampled_negatives_fixed_by_seed_and_never_seen(random_log):
    config = ProtocolConfig(name="sampled", n_negatives=9, seed=3)
    first, again = split(random_log, config), split(random_log, config)
    assert np.array_equal(first.test.negatives, again.test.negatives)
    other = split(random_log, ProtocolConfig(name="sampled", n_negatives=9, seed=4))
    assert not np.array_equal(first.test.negatives, other.test.negatives)
    for user, negatives in zip(first.test.users, first.test.negatives, strict=True):
        seen = set(random_log.sequence(user).tolist())
        assert not seen & set(negatives.tolist())
        assert len(set(negatives.tolist())) == len(negatives)


def test_popularity_negatives_follow_popularity(random_log):
    config = ProtocolConfig(name="sampled", n_negatives=5, negatives="popularity")
    parts = split(random_log, config)
    counts = np.bincount(random_log.items, minlength=random_log.n_items + 1)
    drawn = parts.test.negatives.ravel()
    assert counts[drawn].min() > 0  # never an item with zero popularity


class LastItemScorer(torch.nn.Module):
    """Scores that depend on an instance's last input item and length only (ties included)."""

    def score_all(self, batch) -> torch.Tensor:
        last = batch.items.gather(1, (batch.lengths - 1).clamp(min=0)[:, None])
        items = torch.arange(31)[None, :]
        return ((items * (last + 1) + batch.lengths[:, None]) % 7).float()


@pytest.mark.parametrize("protocol", ["recbole", "fmlp"])
def test_evaluate_in_length_order_returns_ranks_in_instance_order(random_log, protocol):
    config = ProtocolConfig(name=protocol)
    eval_set = split(random_log, config).test
    batcher = Batcher(random_log, max_len=5, device=torch.device("cpu"))
    result = evaluate(LastItemScorer(), batcher, eval_set, config, batch_size=4)
    expected = []
    for user, row in zip(eval_set.users, eval_set.targets, strict=True):  # one at a time
        batch = batcher.prefix(torch.tensor([user]), torch.tensor([row]))
        scores = exclude_unrankable(LastItemScorer().score_all(batch), batcher.items,
                                    batcher.starts[[user]], torch.tensor([row]), batch.targets,
                                    config, None)
        expected.append(int(target_ranks(scores, batch.targets)[0]))
    assert result.ranks.tolist() == expected
    assert result.users.tolist() == eval_set.users.tolist()
