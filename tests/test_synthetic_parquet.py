"""The chunked Parquet writer of the synthetic log: bounded blocks, the planted structure kept."""

from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq
import pytest

from denoiserec.data.synthetic import SyntheticConfig, make_world
from denoiserec.data.synthetic_parquet import write_synthetic_parquet
from denoiserec.errors import OutputError

CONFIG = SyntheticConfig(n_users=700, n_items=300, n_interests=6, noise_ratio=0.2, seed=4)


def test_blocks_carry_the_planted_structure(tmp_path):
    written = write_synthetic_parquet(tmp_path / "log.parquet", CONFIG, chunk_users=160)
    table = pq.read_table(written.path)
    assert pq.ParquetFile(written.path).num_row_groups == 5  # one per block of 160 users
    users, items = table["user_id"].to_numpy(), table["item_id"].to_numpy()
    steps, noise = table["timestamp"].to_numpy(), table["is_noise"].to_numpy()
    assert written.rows == len(users) and written.noisy_rows == noise.sum()
    lengths = np.bincount(users, minlength=CONFIG.n_users)
    assert (np.diff(users) >= 0).all() and (lengths >= CONFIG.min_length).all()
    assert (steps == np.arange(len(users)) - np.repeat(np.cumsum(lengths) - lengths, lengths)).all()
    last_two = steps >= np.repeat(lengths, lengths) - 2
    assert not noise[last_two].any()  # valid and test targets are never planted noise
    assert abs(noise[~last_two].mean() - CONFIG.noise_ratio) < 0.02
    # the sequential signal: after a clean step, the next clean step follows the world's
    # successor with probability p_transition (and by chance 1 / cluster size otherwise)
    world = make_world(CONFIG, np.random.default_rng(CONFIG.seed))
    follows = (~noise[:-1] & ~noise[1:] & (users[:-1] == users[1:]))
    share = (items[1:][follows] == world.successor[items[:-1][follows]]).mean()
    assert abs(share - CONFIG.p_transition) < 0.05


def test_the_file_depends_only_on_the_settings_and_nothing_is_overwritten(tmp_path):
    first = write_synthetic_parquet(tmp_path / "a.parquet", CONFIG, chunk_users=300)
    second = write_synthetic_parquet(tmp_path / "b.parquet", CONFIG, chunk_users=300)
    assert pq.read_table(first.path).equals(pq.read_table(second.path))
    before = first.path.read_bytes()
    with pytest.raises(OutputError, match="exists"):
        write_synthetic_parquet(first.path, CONFIG)
    assert first.path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.parquet", "b.parquet"]
