"""Batch order: the length-aware order against a naive re-implementation, and what it keeps."""

from __future__ import annotations

import pytest
import torch

from denoiserec.data.synthetic import SyntheticConfig, generate
from denoiserec.run import make_trainer, prepare
from denoiserec.runconfig import load_config
from denoiserec.train.order import epoch_generator, length_batches, random_batches


def naive_length_batches(lengths: list[int], batch_size: int, seed: int, epoch: int,
                         chunk_batches: int) -> list[list[int]]:
    """The three steps written out with Python lists (same draws from the same generator)."""
    generator = epoch_generator(seed, epoch)
    shuffled = torch.randperm(len(lengths), generator=generator).tolist()
    chunk = chunk_batches * batch_size
    ordered: list[int] = []
    for start in range(0, len(shuffled), chunk):
        ordered += sorted(shuffled[start:start + chunk], key=lambda i: lengths[i])  # stable
    batches = [ordered[s:s + batch_size] for s in range(0, len(ordered), batch_size)]
    return [batches[i] for i in torch.randperm(len(batches), generator=generator).tolist()]


@pytest.mark.parametrize("n, batch_size, chunk_batches", [(1000, 16, 5), (997, 32, 3),
                                                          (10, 4, 100), (64, 8, 1)])
def test_length_batches_equal_a_naive_implementation(n, batch_size, chunk_batches):
    lengths = torch.randint(1, 51, (n,), generator=torch.Generator().manual_seed(n))
    fast = length_batches(lengths, batch_size, seed=3, epoch=2, chunk_batches=chunk_batches)
    naive = naive_length_batches(lengths.tolist(), batch_size, 3, 2, chunk_batches)
    assert [b.tolist() for b in fast] == naive


def test_every_instance_once_and_far_less_padding():
    # Beauty-like lengths: most inputs short, a few long
    lengths = torch.distributions.Geometric(0.15).sample((20_000,)).long().clamp(0, 49) + 1
    batches = length_batches(lengths, 256, seed=1, epoch=0)
    assert sorted(torch.cat(batches).tolist()) == list(range(len(lengths)))
    assert sorted(len(b) for b in batches)[1:] == [256] * (len(batches) - 1)
    random = random_batches(len(lengths), 256, seed=1, epoch=0)
    width = sum(int(lengths[b].max()) * len(b) for b in batches)
    random_width = sum(int(lengths[b].max()) * len(b) for b in random)
    assert random_width > 3 * width  # tokens computed per epoch, padding included


def test_orders_follow_seed_and_epoch():
    lengths = torch.randint(1, 51, (500,), generator=torch.Generator().manual_seed(0))
    first = [b.tolist() for b in length_batches(lengths, 16, seed=1, epoch=0)]
    assert first == [b.tolist() for b in length_batches(lengths, 16, seed=1, epoch=0)]
    assert first != [b.tolist() for b in length_batches(lengths, 16, seed=1, epoch=1)]
    assert first != [b.tolist() for b in length_batches(lengths, 16, seed=2, epoch=0)]


def test_random_order_is_the_earlier_permutation():
    """``batch_order=random`` keeps every earlier run's batches (and so its numbers)."""
    order = torch.randperm(103, generator=torch.Generator().manual_seed(2020 * 100_003 + 4))
    expected = [order[s:s + 10].tolist() for s in range(0, 103, 10)]
    assert [b.tolist() for b in random_batches(103, 10, 2020, 4)] == expected


@pytest.mark.parametrize("instances", ["prefix", "window"])
def test_trainer_input_lengths_are_the_batch_widths(instances, tmp_path):
    """The lengths the order sorts on are the lengths of the batches the trainer builds."""
    log = generate(SyntheticConfig(n_users=40, n_items=30, mean_length=12, seed=1))
    extra = ["train.window_stride=5"] if instances == "window" else []
    config = load_config(overrides=["max_len=8", "batch_size=16", "train.batch_order=length",
                                    f"train.instances={instances}", *extra])
    trainer = make_trainer(config, prepare(config, log), tmp_path)
    lengths = trainer._input_lengths()
    batches = trainer._batches(0)
    assert sorted(torch.cat(batches).tolist()) == list(range(len(trainer.instances.users)))
    for index in batches:
        assert torch.equal(trainer._batch(index).lengths, lengths[index])


def test_auto_order_is_length_for_prefix_and_random_for_windows(tmp_path):
    log = generate(SyntheticConfig(n_users=40, n_items=30, mean_length=12, seed=1))
    for instances, expected in (("prefix", "length"), ("window", "random")):
        config = load_config(overrides=["max_len=8", "batch_size=16",
                                        f"train.instances={instances}"])
        trainer = make_trainer(config, prepare(config, log), tmp_path / instances)
        n, seed = len(trainer.instances.users), config.train.seed
        want = (length_batches(trainer._input_lengths(), 16, seed, 0) if expected == "length"
                else random_batches(n, 16, seed, 0))
        assert [b.tolist() for b in trainer._batches(0)] == [b.tolist() for b in want]
