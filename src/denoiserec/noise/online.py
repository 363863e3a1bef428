"""Noise injected into a batch of sequences on the fly, with its labels.

:mod:`denoiserec.noise.inject` corrupts a whole log once (the noise lab's robustness and
detection runs); the functions here corrupt the (B, L) right-padded rows of one training batch,
fresh every step, for models that learn from artificial noise: MGSD-WSS's weak supervision
(inserted items) and ATJT's noise-recognition model (replaced items). Both follow the noise
lab's rules: uniform random items, never one of the row's own items (nor the row's target when
given), every real position eligible, padding never labelled as noise. Vectorised: no loop over
rows or positions (a few rejection rounds redraw clashing ids for the whole batch at once).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

MAX_REDRAWS = 100


@dataclass(frozen=True)
class CorruptedRows:
    """A batch's rows with noise in them.

    Attributes:
        items: (B, L) item ids, right-padded with 0.
        lengths: (B,) real items per row.
        is_noise: (B, L) True exactly at the injected items (False on padding).
    """

    items: torch.Tensor
    lengths: torch.Tensor
    is_noise: torch.Tensor


def foreign_items(rows: torch.Tensor, count: int, n_items: int,
                  exclude: torch.Tensor | None = None,
                  generator: torch.Generator | None = None) -> torch.Tensor:
    """(B, count) uniform item ids in [1, n_items], none of them in its row of ``rows`` (B, L)
    nor equal to its ``exclude`` (B,) entry. Raises ValueError when a row holds so many distinct
    items that no foreign one could be drawn in ``MAX_REDRAWS`` rounds."""
    owned = rows if exclude is None else torch.cat([rows, exclude[:, None]], 1)
    draws = torch.randint(1, n_items + 1, (rows.shape[0], count), device=rows.device,
                          generator=generator)
    for _ in range(MAX_REDRAWS):
        clash = (draws[:, :, None] == owned[:, None, :]).any(-1)  # (B, count)
        if not clash.any():
            return draws
        fresh = torch.randint(1, n_items + 1, draws.shape, device=rows.device,
                              generator=generator)
        draws = torch.where(clash, fresh, draws)
    raise ValueError(f"could not draw items foreign to every row in {MAX_REDRAWS} rounds: "
                     f"a row holds nearly all of the {n_items} items")


def insert_items(items: torch.Tensor, lengths: torch.Tensor, count: int, n_items: int,
                 exclude: torch.Tensor | None = None,
                 generator: torch.Generator | None = None) -> CorruptedRows:
    """Insert ``count`` foreign items at uniformly random slots of every row, keep the order of
    the original items, then keep each row's most recent ``n`` items (``n`` = its clean length):
    the noisy row has the clean row's length (the published code kept ``n + count`` when that
    fitted, so noise also changed the lengths the encoder saw; mgsd-wss spec §3.5, §7.8).

    Args:
        items: (B, L) right-padded ids; lengths: (B,) real items per row.
        count: inserted items per row (before truncation).
        n_items: catalogue size (ids 1..n_items).
        exclude: (B,) an extra id per row never inserted (the training target), or None.
    """
    batch, width = items.shape
    device = items.device
    extended = lengths + count  # (B,) length after insertion
    slots = torch.arange(width + count, device=device)[None, :]  # (1, L + count)
    scores = torch.rand(batch, width + count, device=device, generator=generator)
    scores = scores.masked_fill(slots >= extended[:, None], -1.0)  # slots beyond n + count
    chosen = scores.topk(count, dim=1).indices  # (B, count): uniform count-subset of n + count
    noise = torch.zeros(batch, width + count, dtype=torch.bool, device=device)
    noise.scatter_(1, chosen, True)
    real = slots < extended[:, None]
    source = (~noise).cumsum(1) - 1  # index of the original item each clean slot receives
    original = items.gather(1, source.clamp(0, width - 1))
    new_ids = foreign_items(items, count, n_items, exclude, generator)  # (B, count)
    noise_rank = (noise.cumsum(1) - 1).clamp(min=0)  # which inserted id sits in a noise slot
    inserted = new_ids.gather(1, noise_rank.clamp(max=count - 1))
    grown = torch.where(noise, inserted, original) * real  # (B, L + count), left-aligned
    # keep the most recent n of the n + count: drop the first `count` slots of every row
    keep = slots[:, :width] + count  # (1, L): slot of the output's position j
    out_items = grown.gather(1, keep.expand(batch, -1))
    out_noise = noise.gather(1, keep.expand(batch, -1))
    valid = torch.arange(width, device=device)[None, :] < lengths[:, None]
    return CorruptedRows(items=out_items * valid, lengths=lengths.clone(),
                         is_noise=out_noise & valid)


def replace_items(items: torch.Tensor, lengths: torch.Tensor, count: int, n_items: int,
                  rows: torch.Tensor | None = None, exclude: torch.Tensor | None = None,
                  generator: torch.Generator | None = None) -> CorruptedRows:
    """Replace ``min(count, n)`` items at uniformly random real positions of the selected rows
    (``rows``: (B,) bool, all by default) by foreign items; lengths are unchanged."""
    batch, width = items.shape
    positions = torch.arange(width, device=items.device)[None, :]
    real = positions < lengths[:, None]
    scores = torch.rand(batch, width, device=items.device, generator=generator)
    scores = scores.masked_fill(~real, -1.0)
    k = min(count, width)
    chosen = scores.topk(k, dim=1).indices  # (B, k) random real positions first
    picked = torch.zeros_like(real).scatter_(1, chosen, True) & real
    if rows is not None:
        picked &= rows[:, None]
    new_ids = foreign_items(items, k, n_items, exclude, generator)
    rank = (picked.cumsum(1) - 1).clamp(0, k - 1)
    replaced = torch.where(picked, new_ids.gather(1, rank), items)
    return CorruptedRows(items=replaced, lengths=lengths.clone(), is_noise=picked)
