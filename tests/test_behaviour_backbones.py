"""SASRec with behaviour embeddings, the multi-behaviour backbone of END4Rec's comparison
(issue 17, END4Rec spec §2.1): the behaviour of an input changes the score only with the
option on; off, the model and its random draws are SASRec's own; it trains under ``target``."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from denoiserec.data.batches import Batch
from denoiserec.data.synthetic import SyntheticConfig, generate
from denoiserec.models import build_model
from denoiserec.models.base import gather_last
from denoiserec.models.sasrec import SASRecConfig
from denoiserec.run import make_trainer, prepare
from denoiserec.runconfig import load_config

N_ITEMS, MAX_LEN = 30, 10


def _batch() -> Batch:
    lengths = torch.tensor([6, 3, 8])
    real = torch.arange(MAX_LEN)[None] < lengths[:, None]
    generator = torch.Generator().manual_seed(0)
    items = torch.where(real, torch.randint(1, N_ITEMS + 1, (3, MAX_LEN), generator=generator),
                        0)
    behaviours = torch.where(real, torch.randint(0, 3, (3, MAX_LEN), generator=generator), 0)
    rows = torch.where(real, torch.arange(3 * MAX_LEN).view(3, MAX_LEN), -1)
    return Batch(items=items, lengths=lengths, targets=torch.tensor([1, 2, 3]),
                 users=torch.arange(3), rows=rows, behaviours=behaviours)


def _sasrec(on: bool, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    config = SASRecConfig(hidden_size=16, inner_size=32, behaviour_embedding=on)
    return build_model(config, N_ITEMS, MAX_LEN).eval()


def _with_behaviour(batch: Batch, row: int, position: int, behaviour: int) -> Batch:
    behaviours = batch.behaviours.clone()
    behaviours[row, position] = behaviour
    return dataclasses.replace(batch, behaviours=behaviours)


@pytest.mark.parametrize("on", [True, False])
def test_an_input_behaviour_changes_the_score_only_with_the_option(on: bool):
    model, batch = _sasrec(on), _batch()
    with torch.no_grad():
        before = model.score_all(batch)
        for position in (0, 2):  # an earlier input, and the last one of row 1
            behaviour = (int(batch.behaviours[1, position]) + 1) % 3
            other = _with_behaviour(batch, 1, position, behaviour)
            after = model.score_all(other)
            assert torch.equal(after[[0, 2]], before[[0, 2]])  # other rows untouched
            assert torch.equal(after[1], before[1]) != on


def test_behaviour_zero_is_not_padding_and_padding_adds_nothing():
    model, batch = _sasrec(True), _batch()
    table = model.behaviour_embedding.weight
    assert torch.equal(table[0], torch.zeros_like(table[0]))
    with torch.no_grad():
        added = model.embed(batch) - model.item_embedding(batch.items)
        real = batch.padding_mask
        assert torch.allclose(added[real], table[batch.behaviours[real] + 1], atol=1e-7)
        assert (added[real].abs().sum(-1) > 0).all()  # every behaviour, 0 included, has a vector
        assert torch.equal(added[~real], torch.zeros_like(added[~real]))


def test_both_scoring_paths_see_the_behaviours():
    model, batch = _sasrec(True), _batch()
    with torch.no_grad():
        full = gather_last(model.encode(batch), batch.lengths)
        assert torch.allclose(model.sequence_representation(batch), full, atol=1e-6)


def test_option_off_leaves_sasrec_and_its_random_draws_unchanged():
    off, on = _sasrec(False, seed=5).state_dict(), _sasrec(True, seed=5).state_dict()
    assert set(on) - set(off) == {"behaviour_embedding.weight"}
    assert all(torch.equal(off[k], on[k]) for k in off)


def _behaviour_log():
    """A synthetic log with random behaviours: 0 = buy (the target), 1 = cart, 2 = pv."""
    log = generate(SyntheticConfig(n_users=60, n_items=N_ITEMS, mean_length=12, seed=3))
    behaviours = np.random.default_rng(0).choice(3, size=len(log.items), p=[0.4, 0.2, 0.4])
    return dataclasses.replace(log, behaviours=behaviours,
                               behaviour_tokens=("buy", "cart", "pv"))


@pytest.mark.parametrize("instances", ["prefix", "window"])
def test_trains_under_the_target_protocol(instances: str, tmp_path):
    config = load_config(overrides=[
        "model=sasrec", "model.behaviour_embedding=true", "model.hidden_size=16",
        "model.inner_size=32", "protocol=target", "protocol.target_behaviour=buy",
        f"max_len={MAX_LEN}", "batch_size=16", "train.progress=false", "seed=1",
        f"train.instances={instances}"])
    trainer = make_trainer(config, prepare(config, _behaviour_log()), tmp_path)
    table = trainer.model.behaviour_embedding.weight
    before = table.detach().clone()
    loss, _ = trainer.train_epoch(0, max_batches=3)
    assert np.isfinite(loss)
    changed = (table.detach() - before).abs().sum(1) > 0
    assert changed[1:4].all() and not changed[0]  # buy, cart, pv learn; padding stays 0
