"""On-the-fly noise (noise/online.py) against a naive per-row reading of what it must do."""

from __future__ import annotations

import pytest
import torch

from denoiserec.noise.online import foreign_items, insert_items, replace_items


def _rows(batch: int, width: int, n_items: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(1, width + 1, (batch,), generator=g)
    items = torch.randint(1, n_items + 1, (batch, width), generator=g)
    items = items * (torch.arange(width)[None, :] < lengths[:, None])
    return items, lengths


@pytest.mark.parametrize("count", [1, 3, 5])
def test_insertion_properties_over_many_rows(count: int) -> None:
    items, lengths = _rows(10_000, 12, 500, seed=count)
    targets = torch.randint(1, 501, (10_000,), generator=torch.Generator().manual_seed(9))
    out = insert_items(items, lengths, count, 500, exclude=targets,
                       generator=torch.Generator().manual_seed(1))
    assert torch.equal(out.lengths, lengths)  # truncated to the clean length
    for b in range(0, 10_000, 7):  # the naive reading, row by row
        n = int(lengths[b])
        row, noise = out.items[b].tolist(), out.is_noise[b].tolist()
        assert all(x == 0 for x in row[n:]) and not any(noise[n:])  # padding never noise
        clean = [x for x, z in zip(row[:n], noise[:n], strict=True) if not z]
        original = items[b, :n].tolist()
        # the original items in order, the oldest ones dropped by the truncation
        assert clean == original[len(original) - len(clean):]
        assert n - len(clean) <= count
        for x, z in zip(row[:n], noise[:n], strict=True):
            if z:
                assert 1 <= x <= 500 and x not in original and x != int(targets[b])


def test_inserted_slots_are_uniform() -> None:
    """Before truncation every one of the n + count slots is equally likely to be noise: with
    n = 8, count = 2, the 8 kept (most recent) slots are noise with probability 2/10 each."""
    items = torch.arange(1, 9).repeat(20_000, 1)
    lengths = torch.full((20_000,), 8)
    out = insert_items(items, lengths, 2, 1000, generator=torch.Generator().manual_seed(3))
    share = out.is_noise.float().mean(0)
    assert torch.allclose(share, torch.full((8,), 0.2), atol=0.015)


def test_replacement_properties() -> None:
    items, lengths = _rows(5000, 10, 300, seed=4)
    chosen = torch.rand(5000, generator=torch.Generator().manual_seed(5)) < 0.3
    out = replace_items(items, lengths, 3, 300, rows=chosen,
                        generator=torch.Generator().manual_seed(6))
    expected = torch.minimum(lengths, torch.tensor(3)) * chosen
    assert torch.equal(out.is_noise.sum(1), expected)
    assert torch.equal(out.items[~out.is_noise], items[~out.is_noise])
    changed = out.items[out.is_noise]
    assert ((changed >= 1) & (changed <= 300)).all()
    for b in torch.nonzero(chosen).flatten()[:300].tolist():
        row = set(items[b].tolist())
        assert all(int(x) not in row for x in out.items[b][out.is_noise[b]])
    # every real position is eligible, not only the last few
    positions = out.is_noise[lengths == 10].float().mean(0)
    assert (positions > 0).all() and positions.max() / positions.min() < 1.5


def test_foreign_items_refuses_an_impossible_draw() -> None:
    full = torch.arange(1, 6)[None, :]
    with pytest.raises(ValueError, match="nearly all"):
        foreign_items(full, 1, 5)
