"""Full ranking in item chunks with a merged top K against the unchunked evaluation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from denoiserec.data.batches import Batcher
from denoiserec.errors import ConfigError
from denoiserec.metrics import DEFAULT_KS
from denoiserec.models import build_model
from denoiserec.models.base import SequentialRecommender
from denoiserec.protocols import ProtocolConfig, split
from denoiserec.runconfig import load_config
from denoiserec.train.evaluate import chunk_top, evaluate, merge_top
from denoiserec.train.settings import TrainConfig
from tests.conftest import make_log

K = max(DEFAULT_KS)


def random_log(seed=0, users=40, items=97):
    rng = np.random.default_rng(seed)
    return make_log([list(rng.integers(1, items + 1, size=int(rng.integers(3, 15))))
                     for _ in range(users)], n_items=items)


class CoarseScores(SequentialRecommender):
    """Scores rounded to a few levels: ties everywhere, including at the K-th place."""

    name = "coarse"

    def __init__(self, n_items: int) -> None:
        super().__init__(None, n_items, 10)
        self.table = torch.nn.Parameter(torch.randn(n_items + 1, 4))

    def encode(self, batch):
        return self.table[batch.items]

    def item_embeddings(self):
        return self.table

    def score_all(self, batch):
        return torch.round(super().score_all(batch) * 2) / 2

    def item_scorer(self, batch):
        scores = self.score_all(batch)
        return lambda first, stop: scores[:, first:stop].clone()


def clipped(ranks):
    return np.minimum(ranks, K + 1)


@pytest.mark.parametrize("protocol", ["recbole", "fmlp", "sampled"])
@pytest.mark.parametrize("item_chunk", [1, 7, 30, 97])
def test_chunked_ranks_equal_the_unchunked_ones(protocol, item_chunk):
    torch.manual_seed(0)
    log = random_log()
    parts = split(log, ProtocolConfig(name=protocol, n_negatives=30))
    config = load_config(None, ["model.hidden_dropout=0", "model.attn_dropout=0"],
                         base={"model": {"name": "sasrec"}})
    model = build_model(config.model, log.n_items, 10)
    batcher = Batcher(log, 10, torch.device("cpu"))
    whole = evaluate(model, batcher, parts.test, parts.protocol, batch_size=16)
    chunked = evaluate(model, batcher, parts.test, parts.protocol, batch_size=16,
                       item_chunk=item_chunk)
    np.testing.assert_array_equal(chunked.ranks, clipped(whole.ranks))
    assert chunked.metrics == pytest.approx(whole.metrics, abs=1e-12)
    assert (whole.ranks > K).any() and (whole.ranks <= K).any()  # both cases occur


@pytest.mark.parametrize("item_chunk", [3, 16, 50])
def test_ties_rank_by_id_exactly_as_unchunked(item_chunk):
    torch.manual_seed(1)
    log = random_log(seed=3)
    parts = split(log, ProtocolConfig())
    model = CoarseScores(log.n_items)
    batcher = Batcher(log, 10, torch.device("cpu"))
    whole = evaluate(model, batcher, parts.test, parts.protocol)
    chunked = evaluate(model, batcher, parts.test, parts.protocol, item_chunk=item_chunk)
    np.testing.assert_array_equal(chunked.ranks, clipped(whole.ranks))


def test_top_k_order_against_a_sorted_list():
    rng = np.random.default_rng(5)
    scores = torch.tensor(rng.integers(0, 4, size=(6, 40)).astype(np.float32))
    for first in (0, 13):
        values, ids = chunk_top(scores, first, 9)
        for row in range(6):
            brute = sorted(range(40), key=lambda c: (-scores[row, c].item(), c))[:9]
            assert ids[row].tolist() == [c + first for c in brute]
            assert values[row].tolist() == [scores[row, c].item() for c in brute]
    values, ids = merge_top(scores, torch.arange(40).expand(6, 40), 40)
    assert (values[:, :-1] >= values[:, 1:]).all()


def test_a_negative_item_chunk_is_refused():
    # the merge of issue 29 dropped eval_item_chunk from the settings' range checks: -3 was
    # taken silently and ranked every item at once
    with pytest.raises(ConfigError, match=r"train.eval_item_chunk must be in \[0, inf\)"):
        TrainConfig(eval_item_chunk=-3)
    assert TrainConfig(eval_item_chunk=0).eval_item_chunk == 0
