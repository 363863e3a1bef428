"""Guards against bugs the rest of the suite let through, each checked against a reference
written here: pairing by user in ``compare``, ``clean`` scores on their own input rows, resume
with the LR warm-up, sampled negatives in length order, MSDCCL's loss without target leakage,
popularity-weighted negatives, and the ``protocol.ties`` rule."""

from __future__ import annotations

import csv
import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from denoiserec.data.batches import Batch, Batcher
from denoiserec.data.log import PAD_TOKEN, Interactions
from denoiserec.data.synthetic import SyntheticConfig, generate
from denoiserec.nn.losses import Objective
from denoiserec.noise.significance import paired_permutation_test
from denoiserec.protocols import ProtocolConfig, protocol_negatives, split
from denoiserec.run import restore, train_config
from denoiserec.runconfig import load_config
from denoiserec.train.evaluate import evaluate
from tests.batches import random_batch
from tests.conftest import interrupt_after_epoch

TINY = ["model.hidden_size=16", "model.inner_size=32", "model.n_layers=1", "batch_size=64",
        "train.progress=false", "max_len=10", "train.patience=100"]


def _tiny_config(*extra: str, epochs: int):
    return load_config(overrides=[*TINY, f"epochs={epochs}", *extra])


@pytest.fixture(scope="module")
def small_log() -> Interactions:
    return generate(SyntheticConfig(n_users=40, n_items=60, mean_length=15, seed=2))


# ----------------------------------------------------------------------------- 1. compare


def _ndcg10(rank: int) -> float:
    return 1.0 / math.log2(rank + 1) if rank <= 10 else 0.0


def _write_ranks(run_dir: Path, ranks: dict[str, int], order: list[str]) -> Path:
    run_dir.mkdir(parents=True)
    with open(run_dir / "test_ranks.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["user", "item", "rank"])
        for user in order:
            writer.writerow([user, "i1", ranks[user]])
    return run_dir


def _cell(model: str, run_dir: Path, seed: int = 0):
    from denoiserec.report.comparison import CellResult

    return CellResult(model=model, noise=0.0, seed=seed, dataset="handmade", protocol="recbole",
                      best_epoch=0, test={"ndcg@10": 0.5, "hit@10": 0.5, "mrr@10": 0.5},
                      run_dir=run_dir)


def test_compare_pairs_per_user_values_by_user_not_by_file_order(tmp_path):
    from denoiserec.compare import paired_user_test, per_user_ndcg, summarize

    users = [f"u{i}" for i in range(12)]
    rng = np.random.default_rng(0)
    ranks_a = {u: int(r) for u, r in zip(users, rng.integers(1, 15, len(users)), strict=True)}
    shuffled = list(np.array(users)[rng.permutation(len(users))])
    # the same ranks per user, listed in another order: a by-user pairing sees no difference
    same_a = _write_ranks(tmp_path / "a", ranks_a, users)
    same_b = _write_ranks(tmp_path / "b", ranks_a, shuffled)
    p_value, difference = paired_user_test(per_user_ndcg(same_a), per_user_ndcg(same_b))
    assert difference == 0.0 and p_value == 1.0
    summary = summarize([_cell("x", same_a), _cell("y", same_b)], ["x", "y"], [0.0])
    assert summary[1].diff_vs_first == 0.0 and summary[1].p_vs_first == 1.0

    # other ranks, in another order, averaged over two seeds listed in two more orders
    ranks_b = {u: int(r) for u, r in zip(users, rng.integers(1, 15, len(users)), strict=True)}
    ranks_b2 = {u: int(r) for u, r in zip(users, rng.integers(1, 15, len(users)), strict=True)}
    other_b = _write_ranks(tmp_path / "b1", ranks_b, shuffled)
    other_b2 = _write_ranks(tmp_path / "b2", ranks_b2, users[::-1])
    per_user_b = {u: (_ndcg10(ranks_b[u]) + _ndcg10(ranks_b2[u])) / 2 for u in users}
    reference = paired_permutation_test(np.array([per_user_b[u] for u in sorted(users)]),
                                        np.array([_ndcg10(ranks_a[u]) for u in sorted(users)]))
    summary = summarize([_cell("x", same_a), _cell("x", same_a, 1), _cell("y", other_b),
                         _cell("y", other_b2, 1)], ["x", "y"], [0.0])
    assert summary[1].diff_vs_first == pytest.approx(reference.mean_difference, abs=1e-12)
    assert summary[1].p_vs_first == reference.p_value and summary[1].seeds_vs_first == 2
    p_value, difference = paired_user_test(per_user_ndcg(other_b), per_user_ndcg(same_b))
    by_user = paired_permutation_test(
        np.array([_ndcg10(ranks_b[u]) for u in sorted(users)]),
        np.array([_ndcg10(ranks_a[u]) for u in sorted(users)]))
    assert (p_value, difference) == pytest.approx((by_user.p_value, by_user.mean_difference))


def test_compare_tests_models_over_the_seeds_both_have(tmp_path):
    """With cells still missing (``compare --no-train``), a model's per-user values are compared
    over the seeds both models finished, never one model's seeds against another's."""
    from denoiserec.compare import summarize
    from denoiserec.report.comparison import write_outputs

    users = [f"u{i}" for i in range(30)]
    perfect = {u: 1 for u in users}  # both models rank every target first under seed 0 ...
    worse = {u: 11 for u in users}   # ... and x ranks it 11th under seeds 1 and 2
    base = _write_ranks(tmp_path / "base0", perfect, users)
    x = [_write_ranks(tmp_path / f"x{s}", perfect if s == 0 else worse, users) for s in range(3)]
    cells = [_cell("base", base), *(_cell("x", x[s], s) for s in range(3))]
    for s in (1, 2):  # x's test NDCG@10 is lower under seeds 1 and 2
        cells[1 + s] = dataclasses.replace(cells[1 + s], test={**cells[1 + s].test,
                                                               "ndcg@10": 0.2})
    summary = summarize(cells, ["base", "x"], [0.0])
    assert summary[1].seeds_vs_first == 1  # seed 0 only: the same ranks, no difference
    assert summary[1].diff_vs_first == 0.0 and summary[1].p_vs_first == 1.0
    text = write_outputs(cells, summary, ["base", "x"], "insert", "handmade", "recbole",
                         tmp_path)
    assert "1 (+0.0000, 1 seeds)" in text  # the table says the test used 1 of x's 3 seeds
    noisy = [dataclasses.replace(c, noise=0.2) for c in cells[1:]]  # x at noise 0.2: seed 0 ...
    summary = summarize([*cells, noisy[0]], ["base", "x"], [0.0, 0.2])
    (row,) = [r for r in summary if r.noise == 0.2]
    assert row.seeds_vs_clean == 1 and row.relative_change_vs_clean == 0.0  # ... vs seed 0
    # (over x's three clean seeds it would read 0.5 / 0.3 - 1 = +67 %)
    diverged = dataclasses.replace(cells[2], test={**cells[2].test, "ndcg@10": float("nan")})
    (_, row) = summarize([cells[0], cells[1], diverged], ["base", "x"], [0.0])
    assert math.isnan(row.mean["ndcg@10"]) and math.isnan(row.std["ndcg@10"])  # no traceback


# ----------------------------------------------------------------------------- 2. clean


@pytest.fixture(scope="module")
def trained_run(small_log, tmp_path_factory) -> Path:
    run_dir = tmp_path_factory.mktemp("guards") / "run"
    train_config(_tiny_config(epochs=1), run_dir, small_log)
    return run_dir


@pytest.mark.parametrize("with_time", [True, False])
def test_clean_scores_belong_to_their_own_input_rows(small_log, trained_run, tmp_path,
                                                     monkeypatch, with_time):
    from denoiserec import clean as clean_module
    from denoiserec.noise.scores import surprise_scores

    log = small_log
    monkeypatch.setattr(clean_module, "load_log", lambda _: log)
    # reference: the run's surprise score of every row of the canonical log, keyed by row
    model = restore(trained_run, log=log).model
    expected = surprise_scores(model, log, 10)
    users = log.user_tokens[log.row_users]
    frame = pd.DataFrame({"user_id": users, "item_id": log.item_tokens[log.items],
                          "timestamp": log.timestamps, "row": np.arange(log.n_interactions)})
    rng = np.random.default_rng(3)
    if with_time:  # rows fully shuffled: the timestamps give the order back
        order = rng.permutation(len(frame))
    else:  # no time column: users interleaved, each user's rows still in time order
        order = _interleave(log, rng)
        frame = frame.drop(columns="timestamp")
    source = tmp_path / "shuffled.csv"
    frame.iloc[order].to_csv(source, index=False)
    out = tmp_path / "clean.csv"
    clean_module.clean(trained_run, source, out, drop_ratio=0.2)
    scored = pd.read_csv(tmp_path / "clean.scored.csv")
    assert scored["row"].tolist() == frame["row"].to_numpy()[order].tolist()  # input order
    assert not np.allclose(expected[order], expected)  # the shuffle moved the scores
    assert scored["noise_score"].to_numpy() == pytest.approx(expected[scored["row"]], abs=1e-12)
    kept = set(pd.read_csv(out)["row"])
    worst = set(scored.sort_values("noise_score", ascending=False, kind="stable")["row"]
                .iloc[: round(0.2 * len(scored))])
    assert kept == set(range(log.n_interactions)) - worst


def _interleave(log: Interactions, rng: np.random.Generator) -> np.ndarray:
    """A row order that interleaves users at random but keeps each user's rows in order."""
    slots = rng.permutation(log.row_users)  # which user takes the next slot
    order = np.empty(log.n_interactions, dtype=np.int64)
    for user in range(log.n_users):
        order[slots == user] = np.arange(log.offsets[user], log.offsets[user + 1])
    return order


# ----------------------------------------------------------------------------- 3. resume


def test_resume_restores_the_warmup_schedule(tmp_path, monkeypatch):
    log = generate(SyntheticConfig(n_users=60, n_items=50, mean_length=14, seed=1))
    probe = split(log, load_config(overrides=TINY).protocol)
    steps_per_epoch = math.ceil(len(probe.train_targets) / 64)
    warmup = int(2.5 * steps_per_epoch)
    assert warmup > steps_per_epoch
    config = _tiny_config(f"train.warmup_steps={warmup}", epochs=4)
    straight = train_config(config, tmp_path / "straight", log)

    # interrupted in the middle of the warm-up
    interrupt_after_epoch(monkeypatch, 1, lambda: train_config(config, tmp_path / "resumed", log))
    resumed = train_config(config, tmp_path / "resumed", log)
    assert [e["train_loss"] for e in resumed.history] == [e["train_loss"] for e in straight.history]
    assert [e["valid"] for e in resumed.history] == [e["valid"] for e in straight.history]
    assert resumed.test == straight.test


# ----------------------------------------------------------------------------- 4. sampled


class InputScorer(torch.nn.Module):
    """Continuous scores that depend on the instance's input (last item, length, first item)."""

    def __init__(self, n_items: int) -> None:
        super().__init__()
        self.n_items = n_items

    def score_all(self, batch: Batch) -> torch.Tensor:
        last = batch.items.gather(1, (batch.lengths - 1).clamp(min=0)[:, None]).double()
        first = batch.items[:, :1].double()
        items = torch.arange(self.n_items + 1, dtype=torch.float64)[None, :]
        return torch.sin(items * (last + 1.3) + 0.7 * batch.lengths[:, None] + first).float()


@pytest.mark.parametrize("batch_size", [1, 3, 7])
def test_sampled_evaluation_ranks_each_target_against_its_own_negatives(random_log, batch_size):
    log = random_log
    config = ProtocolConfig(name="sampled", n_negatives=8, seed=5)
    parts = split(log, config)
    lengths = parts.test.targets - log.offsets[:-1][parts.test.users]
    assert not np.all(np.diff(lengths) >= 0)  # length order is another order
    batcher = Batcher(log, max_len=6, device=torch.device("cpu"))
    model = InputScorer(log.n_items)
    for eval_set in (parts.valid, parts.test):
        result = evaluate(model, batcher, eval_set, config, batch_size=batch_size)
        expected = []
        for j in range(len(eval_set)):  # one instance at a time, its own negatives
            batch = batcher.prefix(torch.tensor([eval_set.users[j]]),
                                   torch.tensor([eval_set.targets[j]]))
            scores = model.score_all(batch)[0].tolist()
            target = int(log.items[eval_set.targets[j]])
            rank = 1 + sum(scores[n] > scores[target]
                           or (scores[n] == scores[target] and n < target)
                           for n in eval_set.negatives[j].tolist())
            expected.append(rank)
        assert result.ranks.tolist() == expected


# ----------------------------------------------------------------------------- 6. MSDCCL


def _msdccl(**overrides):
    from denoiserec.models import build_model, model_config_class
    from denoiserec.models.msdccl import MSDCCLConfig

    torch.manual_seed(0)
    backbone = model_config_class("bert4rec")(hidden_size=16, inner_size=16,
                                              hidden_dropout=0.0, attn_dropout=0.0)
    config = MSDCCLConfig(backbone=backbone, inner_size=32, att_dropout=0.0, ae_dropout=0.0,
                          **overrides)
    return build_model(config, 20, 10)


def _msdccl_batch(targets: torch.Tensor | None = None) -> Batch:
    return random_batch([1, 2, 3, 6, 10, 10], 20, 10, targets=targets)


@pytest.mark.parametrize("train", [False, True])
def test_msdccl_loss_scores_a_representation_without_the_target(train):
    model = _msdccl().train(train)
    first = _msdccl_batch()
    second = dataclasses.replace(first, targets=first.targets % 20 + 1)
    seen = []
    original = model.backbone.forward

    def spy(embeddings, *args, **kwargs):
        output = original(embeddings, *args, **kwargs)
        seen.append((embeddings.detach().clone(), output.detach().clone()))
        return output

    model.backbone.forward = spy
    for batch in (first, second):
        torch.manual_seed(1)
        model.loss(batch, Objective(), model.progress_at(0)).loss.backward()
    assert len(seen) == 2  # one backbone pass per loss: r_soft
    with torch.no_grad():
        model.eval()
        reference = model.soft_denoise(first).embeddings  # reads no targets
        model.backbone.forward = original
        representation = model.sequence_representation(first)
    (inputs_1, output_1), (inputs_2, output_2) = seen
    assert torch.equal(inputs_1, inputs_2) and torch.equal(output_1, output_2)
    if not train:
        assert torch.allclose(inputs_1, reference, atol=1e-6)
        assert torch.allclose(output_1, representation, atol=1e-6)


def test_msdccl_target_row_gradient_comes_from_the_output_layer_only():
    model = _msdccl(use_hard_branch=False, use_contrastive=False, curriculum="none").eval()
    batch = _msdccl_batch()
    model.loss(batch, Objective(), model.progress_at(0)).loss.backward()
    gradient = model.item_embedding.weight.grad.clone()
    model.zero_grad()
    # reference: CE of a representation computed without targets
    representation = model.sequence_representation(batch)
    logits = representation @ model.item_embedding.weight.T
    torch.nn.functional.cross_entropy(logits, batch.targets).backward()
    assert torch.allclose(gradient, model.item_embedding.weight.grad, atol=1e-6)


# ----------------------------------------------------------------------------- 7. popularity


def test_popularity_negatives_are_drawn_in_proportion_to_popularity():
    # item k (1..30) is interacted with by max(1, 300 // k**2) background users; the probe user
    # (user 0) has items 28..30 only
    sequences = [[28, 29, 30]]
    counts = {k: max(1, 300 // k**2) for k in range(1, 31)}
    for item, count in counts.items():
        sequences += [[item]] * count
    lengths = [len(s) for s in sequences]
    log = Interactions(offsets=np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64),
                       items=np.concatenate([np.array(s, dtype=np.int64) for s in sequences]),
                       user_tokens=np.array([f"u{u}" for u in range(len(sequences))],
                                            dtype=object),
                       item_tokens=np.array([PAD_TOKEN, *(f"i{i}" for i in range(1, 31))],
                                            dtype=object))
    draws = 40000
    negatives = protocol_negatives(log, np.zeros(draws, dtype=np.int64), 1, "popularity", 0)
    observed = np.bincount(negatives.ravel(), minlength=31)
    assert observed[[0, 28, 29, 30]].sum() == 0  # never padding, never the user's items
    popularity = np.array([0] + [counts[k] + (k >= 28) for k in range(1, 31)], dtype=float)
    eligible = np.arange(1, 28)
    probability = popularity[eligible] / popularity[eligible].sum()
    expected = draws * probability
    chi_square = float(((observed[eligible] - expected) ** 2 / expected).sum())
    assert chi_square < 70  # 26 degrees of freedom: p < 1e-5 beyond 70; uniform gives ~1e5
    # the most popular item far more often than a rare one, about 300 times
    assert observed[1] > 100 * max(1, observed[20])
    # with several negatives per row, popular items still dominate
    several = protocol_negatives(log, np.zeros(5000, dtype=np.int64), 4, "popularity", 1)
    frequency = np.bincount(several.ravel(), minlength=31) / several.size
    assert frequency[1] > 0.2 and frequency[2] > 0.1 and frequency[20] < 0.02


# ----------------------------------------------------------------------------- 8. ties


class TiedScorer(torch.nn.Module):
    """Scores with many ties (5 levels), different per instance."""

    def __init__(self, n_items: int) -> None:
        super().__init__()
        self.n_items = n_items

    def score_all(self, batch: Batch) -> torch.Tensor:
        items = torch.arange(self.n_items + 1)[None, :]
        return ((items * 7 + batch.lengths[:, None] + batch.users[:, None]) % 5).float()


@pytest.mark.parametrize("protocol", ["recbole", "sampled"])
def test_evaluation_follows_the_tie_rule_of_the_protocol(random_log, protocol):
    log = random_log
    batcher = Batcher(log, max_len=6, device=torch.device("cpu"))
    model = TiedScorer(log.n_items)
    results = {}
    for ties in ("id", "topk"):
        config = ProtocolConfig(name=protocol, ties=ties, n_negatives=15)
        eval_set = split(log, config).test
        result = evaluate(model, batcher, eval_set, config, batch_size=4)
        by_id, by_topk = [], []
        for j in range(len(eval_set)):
            user, row = eval_set.users[j], eval_set.targets[j]
            batch = batcher.prefix(torch.tensor([user]), torch.tensor([row]))
            scores = model.score_all(batch)[0]
            rankable = (list(range(1, log.n_items + 1)) if protocol == "recbole"
                        else sorted({*eval_set.negatives[j].tolist(), int(log.items[row])}))
            masked = torch.full_like(scores, -torch.inf)
            masked[rankable] = scores[rankable]
            target = int(log.items[row])
            by_id.append(1 + sum(float(scores[i]) > float(scores[target])
                                 or (float(scores[i]) == float(scores[target]) and i < target)
                                 for i in rankable))
            top = torch.topk(masked[None], 20, dim=1).indices[0].tolist()
            by_topk.append(top.index(target) + 1 if target in top else 21)
        results[ties] = result.ranks.tolist()
        assert results[ties] == (by_id if ties == "id" else by_topk)
    assert results["id"] != results["topk"]  # the ties make the rules disagree


def test_run_records_the_protocol_config_with_its_tie_rule(small_log, tmp_path):
    train_config(_tiny_config("protocol.ties=topk", epochs=1), tmp_path / "run", small_log)
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["protocol_config"] == dataclasses.asdict(ProtocolConfig(ties="topk"))
