"""The built-in synthetic log at any scale, written to Parquet one block of users at a time.

The generative story is :mod:`denoiserec.data.synthetic`'s: one world (interest clusters, Zipf
popularity, item successors) drawn from ``seed``, then users in blocks of ``chunk_users``, block
``k`` drawn from the generator seeded by ``(seed, k + 1)``, so memory is bounded by one block
and the file does not depend on anything but the settings and the block size.

Columns: ``user_id`` (int64, 0-based), ``item_id`` (int64, the 0-based item index; the
in-memory log calls it ``i<index>``), ``timestamp`` (float64, the step within the user's
sequence) and ``is_noise`` (bool, the planted off-interest clicks). One row group per block.
"""

from __future__ import annotations

import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from denoiserec.data.synthetic import SyntheticConfig, generate_users, make_world
from denoiserec.errors import OutputError

SCHEMA = pa.schema([("user_id", pa.int64()), ("item_id", pa.int64()),
                    ("timestamp", pa.float64()), ("is_noise", pa.bool_())])


@dataclass(frozen=True)
class SyntheticFile:
    """What :func:`write_synthetic_parquet` wrote."""

    path: Path
    rows: int
    users: int
    noisy_rows: int
    seconds: float


def write_synthetic_parquet(path: str | Path, config: SyntheticConfig,
                            chunk_users: int = 50_000, force: bool = False) -> SyntheticFile:
    """Write ``config.n_users`` synthetic users to ``path`` (Parquet), block by block.

    The file appears complete or not at all (written beside it, then renamed); an existing
    file is refused unless ``force``.
    """
    path = Path(path)
    if path.exists() and not force:
        raise OutputError(f"{path} exists; choose another path or pass --force")
    if chunk_users < 1:
        raise ValueError(f"chunk_users must be at least 1, got {chunk_users}")
    started = time.perf_counter()
    world = make_world(config, np.random.default_rng(config.seed))
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    rows = noisy = 0
    try:
        with pq.ParquetWriter(tmp, SCHEMA) as writer:
            for block, first in enumerate(range(0, config.n_users, chunk_users)):
                n_users = min(chunk_users, config.n_users - first)
                rng = np.random.default_rng([config.seed, block + 1])
                users = generate_users(config, world, n_users, rng)
                items, noise, steps = users.flat()
                user_ids = first + np.repeat(np.arange(n_users, dtype=np.int64), users.lengths)
                writer.write_table(pa.table([user_ids, items, steps.astype(np.float64), noise],
                                            schema=SCHEMA))
                rows += len(items)
                noisy += int(noise.sum())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return SyntheticFile(path, rows, config.n_users, noisy, time.perf_counter() - started)
