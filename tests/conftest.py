"""Shared fixtures: the real-data folder (skipped with a reason when absent) and tiny logs."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from denoiserec.data.log import PAD_TOKEN, Interactions


def shared_data_dir() -> Path:
    """``$DENOISEREC_DATA`` or ``../shared/data`` beside the checkout."""
    default = Path(__file__).resolve().parents[2] / "shared" / "data"
    return Path(os.environ.get("DENOISEREC_DATA", default))


@pytest.fixture
def real_data(monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point DENOISEREC_DATA at the shared data, or skip saying where it was looked for."""
    folder = shared_data_dir()
    if not (folder / "ml-100k" / "ml-100k.inter").is_file():
        pytest.skip(f"real datasets not found at {folder} (set DENOISEREC_DATA)")
    monkeypatch.setenv("DENOISEREC_DATA", str(folder))
    return folder


def make_log(sequences: list[list[int]], n_items: int | None = None) -> Interactions:
    """A log from explicit per-user item lists (ids 1..n_items)."""
    n_items = n_items or max(max(s) for s in sequences)
    lengths = [len(s) for s in sequences]
    return Interactions(
        offsets=np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64),
        items=np.concatenate([np.asarray(s, dtype=np.int64) for s in sequences]),
        user_tokens=np.array([f"u{u}" for u in range(len(sequences))], dtype=object),
        item_tokens=np.array([PAD_TOKEN, *(f"i{i}" for i in range(1, n_items + 1))],
                             dtype=object),
        name="handmade",
    )


@pytest.fixture
def random_log() -> Interactions:
    rng = np.random.default_rng(7)
    sequences = [list(rng.integers(1, 31, size=int(rng.integers(1, 12)))) for _ in range(25)]
    return make_log(sequences, n_items=30)


@pytest.fixture(autouse=True, scope="session")
def one_thread():
    """Tiny tensors run faster on one thread (and the suite shares the machine)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def interrupt_after_epoch(monkeypatch: pytest.MonkeyPatch, epoch: int, run) -> None:
    """Run ``run()`` with training interrupted (KeyboardInterrupt) right after the checkpoint
    of ``epoch`` is saved, then restore the trainer so the next run resumes normally."""
    from denoiserec.train.trainer import Trainer

    original = Trainer.save_last

    def save_then_crash(self):
        original(self)
        if self.state.epoch == epoch:
            raise KeyboardInterrupt

    monkeypatch.setattr(Trainer, "save_last", save_then_crash)
    with pytest.raises(KeyboardInterrupt):
        run()
    monkeypatch.setattr(Trainer, "save_last", original)
