"""The shared FFT filter block and FMLP-Rec: the filter equals a direct circular convolution,
gradients reach the embeddings through it, alignment round-trips, FMLP-Rec trains."""

from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.nn.functional as F

from denoiserec.data.batches import Batch
from denoiserec.data.synthetic import SyntheticConfig, generate
from denoiserec.models import build_model
from denoiserec.models.fmlp import FMLPRecConfig
from denoiserec.nn.fft import LearnableFilter, frequency_filter, left_align, right_align
from denoiserec.nn.losses import Objective
from denoiserec.run import make_trainer, prepare
from denoiserec.runconfig import load_config


def naive_circular_convolution(x: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """y[t] = sum_s kernel[s] * x[(t - s) mod L], per channel, by the direct double sum."""
    B, L, D = x.shape
    y = torch.zeros_like(x)
    for t in range(L):
        for s in range(L):
            y[:, t] += kernel[s] * x[:, (t - s) % L]
    return y


@pytest.mark.parametrize("length", [7, 16])
def test_frequency_filter_is_a_circular_convolution(length: int):
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(3, length, 5, dtype=torch.float64, generator=generator)
    weight = torch.randn(length // 2 + 1, 5, 2, dtype=torch.float64, generator=generator)
    weight = torch.view_as_complex(weight)
    # the time-domain kernel of the filter (orthonormal scaling: sqrt(L) per transform pair)
    kernel = torch.fft.irfft(weight, n=length, dim=0, norm="ortho") / length ** 0.5
    expected = naive_circular_convolution(x, kernel)
    assert torch.allclose(frequency_filter(x, weight), expected, atol=1e-12)


def test_filter_is_not_symmetric_in_time():
    """The release's miner is symmetric in time (spec §2.2(b)); a complex filter is not."""
    layer = LearnableFilter(8, 4, dropout=0.0, eps=1e-12)
    x = torch.randn(2, 8, 4)
    reversed_x = x[:, (-torch.arange(8)) % 8]
    assert not torch.allclose(layer(x), layer(reversed_x)[:, (-torch.arange(8)) % 8], atol=1e-4)


def test_gradients_reach_the_embeddings_through_the_filter():
    """Only the last slot is scored: every other item's embedding gets its gradient through
    the rfft/irfft pair (the release detaches it, spec §2.2(d))."""
    torch.manual_seed(0)
    embedding = torch.nn.Embedding(20, 6)
    layer = LearnableFilter(10, 6, dropout=0.0, eps=1e-12)
    items = torch.randperm(19)[:10].view(1, 10) + 1
    weight = torch.view_as_complex(layer.weight)
    (frequency_filter(embedding(items), weight)[:, -1] * torch.randn(6)).sum().backward()
    assert (embedding.weight.grad[items[0, :-1]].abs().sum(1) > 0).all()
    assert layer.weight.grad.abs().sum() > 0


def test_left_and_right_align_round_trip():
    x = torch.arange(1, 13, dtype=torch.float32).view(3, 4)
    lengths = torch.tensor([4, 2, 1])
    x = torch.where(torch.arange(4)[None] < lengths[:, None], x, 0)
    left = left_align(x, lengths, 6)
    assert left.tolist() == [[0, 0, 1, 2, 3, 4], [0, 0, 0, 0, 5, 6], [0, 0, 0, 0, 0, 9]]
    assert torch.equal(right_align(left, lengths, 4), x)


@pytest.fixture(scope="module")
def fmlp_trainer(tmp_path_factory):
    log = generate(SyntheticConfig(n_users=80, n_items=40, mean_length=12, seed=1))
    config = load_config(overrides=["model=fmlp", "model.hidden_size=16", "model.inner_size=32",
                                    "max_len=10", "protocol=fmlp", "batch_size=64",
                                    "train.progress=false", "train.epochs=2"])
    return make_trainer(config, prepare(config, log), tmp_path_factory.mktemp("fmlp"))


def test_fmlp_scores_do_not_depend_on_batch_width(fmlp_trainer):
    model, split = fmlp_trainer.model.eval(), fmlp_trainer.split
    batch = fmlp_trainer.batcher.prefix(torch.as_tensor(split.valid.users[:16]),
                                        torch.as_tensor(split.valid.targets[:16]))
    extra = 10 - batch.items.shape[1]
    wide = dataclasses.replace(batch, items=F.pad(batch.items, (0, extra)),
                               rows=F.pad(batch.rows, (0, extra), value=-1))
    with torch.no_grad():
        assert torch.allclose(model.score_all(batch), model.score_all(wide), atol=1e-5)


def test_fmlp_trains_under_the_fmlp_protocol(fmlp_trainer):
    before = fmlp_trainer.evaluate("valid").metrics["ndcg@10"]
    loss_first, _ = fmlp_trainer.train_epoch(0)
    loss_second, _ = fmlp_trainer.train_epoch(1)
    assert loss_second < loss_first
    assert fmlp_trainer.evaluate("valid").protocol == "fmlp"
    assert before >= 0


def test_fmlp_behaviour_embedding_is_used():
    model = build_model(FMLPRecConfig(hidden_size=8, inner_size=8, behaviour_embedding=True),
                        n_items=10, max_len=6)
    from denoiserec.data.batches import Batch
    items = torch.tensor([[1, 2, 3]])
    batch = Batch(items=items, lengths=torch.tensor([3]), targets=torch.tensor([4]),
                  users=torch.tensor([0]), rows=torch.tensor([[0, 1, 2]]),
                  behaviours=torch.tensor([[0, 1, 0]]))
    loss = model.loss(batch, Objective(), model.progress_at(0)).loss
    loss.backward()
    assert model.behaviour_embedding.weight.grad[1:3].abs().sum() > 0


@pytest.mark.parametrize("length", [7, 8, 50])
def test_filter_at_the_last_slot_equals_the_full_filter_there(length: int):
    layer = LearnableFilter(length, 6, dropout=0.0, eps=1e-12)
    with torch.no_grad():
        layer.weight.normal_()
        x = torch.randn(4, length, 6)
        assert torch.allclose(layer.at_last_slot(x), layer(x)[:, -1], atol=1e-5)


def test_fmlp_last_slot_representation_equals_the_full_encoder():
    torch.manual_seed(0)
    model = build_model(FMLPRecConfig(hidden_size=8, inner_size=16, n_layers=3), 20, 9).eval()
    lengths = torch.tensor([1, 4, 9, 9, 2])
    items = torch.where(torch.arange(9)[None] < lengths[:, None], torch.randint(1, 21, (5, 9)), 0)
    batch = Batch(items=items, lengths=lengths, targets=torch.ones(5, dtype=torch.long),
                  users=torch.arange(5), rows=torch.where(items > 0, 1, -1))
    with torch.no_grad():
        model.encoder.filters[-1].weight.normal_()  # a filter far from its tiny init
        assert torch.allclose(model.sequence_representation(batch), model.encode(batch)[:, -1],
                              atol=1e-5)
