"""Out-of-core preprocessing (DuckDB) against the in-memory path, the RecBole digest, the cache."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("duckdb")

from denoiserec.data import load_dataset  # noqa: E402
from denoiserec.data.cache import cache_dir  # noqa: E402
from denoiserec.data.datasets import DataConfig  # noqa: E402
from denoiserec.data.digest import log_digest  # noqa: E402
from denoiserec.data.outofcore import prepare_out_of_core  # noqa: E402
from denoiserec.data.preprocess import build_interactions  # noqa: E402
from denoiserec.data.readers import read_log  # noqa: E402
from denoiserec.errors import ConfigError, DataError  # noqa: E402
from tests.test_protocols import RECBOLE_ML100K_DIGEST, sequence_digest  # noqa: E402


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("DENOISEREC_CACHE", str(tmp_path / "cache"))


def random_table(path, seed=0, rows=3000, behaviours=True):
    """A messy log: repeated (user, item) pairs, tied timestamps, string ids, ratings."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({
        "user_id": [f"u{x}" for x in rng.integers(0, 60, rows)],
        "item_id": [f"i{x:03d}" for x in (rng.zipf(1.3, rows) % 120)],
        "timestamp": rng.integers(0, 400, rows).astype(float) * 1e6,  # many ties
        "rating": rng.integers(1, 6, rows).astype(float),
    })
    if behaviours:
        frame["behavior"] = rng.choice(["pv", "buy", "cart"], rows)
    if path.suffix == ".parquet":
        frame.to_parquet(path)
    else:
        frame.to_csv(path, index=False, sep="\t" if path.suffix == ".tsv" else ",")
    return path


SETTINGS = [
    {},
    {"user_core": 5, "item_core": 5},
    {"rating_threshold": 3.0, "duplicates": "first"},
    {"duplicates": "last", "time_order": "exact", "item_core": 4},
]


@pytest.mark.parametrize("suffix", [".csv", ".tsv", ".parquet"])
@pytest.mark.parametrize("settings", SETTINGS)
def test_same_log_as_the_in_memory_path(tmp_path, suffix, settings):
    path = random_table(tmp_path / f"log{suffix}", seed=len(settings))
    expected = build_interactions(read_log(path), name="log", **settings)
    found = prepare_out_of_core(path, name="log", threads=1, **settings)
    assert log_digest(found) == log_digest(expected)  # sequences, items, behaviours, tokens
    np.testing.assert_array_equal(found.timestamps, expected.timestamps)
    assert found.behaviour_tokens == expected.behaviour_tokens
    assert not found.items.flags.writeable


def test_ml100k_keeps_recboles_split_digest(real_data):
    log = load_dataset(DataConfig(dataset="ml-100k", engine="duckdb"))
    assert (log.n_users, log.n_items, log.n_interactions) == (943, 1682, 100_000)
    assert sequence_digest(log) == RECBOLE_ML100K_DIGEST
    assert log_digest(log) == log_digest(load_dataset("ml-100k"))
    assert isinstance(log.items, np.memmap)


def test_cache_is_reused_only_for_the_same_content_and_settings(tmp_path):
    path = random_table(tmp_path / "log.csv")
    first = prepare_out_of_core(path, threads=1)
    assert len(list(cache_dir().iterdir())) == 1
    again = prepare_out_of_core(path, threads=1)
    assert log_digest(again) == log_digest(first)
    assert len(list(cache_dir().iterdir())) == 1  # read back, not prepared anew
    prepare_out_of_core(path, threads=1, user_core=3)
    assert len(list(cache_dir().iterdir())) == 2  # another setting: another entry
    random_table(path, seed=9)  # the file changes under the same name
    changed = prepare_out_of_core(path, threads=1)
    assert log_digest(changed) == log_digest(build_interactions(read_log(path), name="log"))
    assert log_digest(changed) != log_digest(first)


def test_bad_input_is_one_line(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text("user_id,item_id,timestamp\na,b,1\nc,d,yesterday\n")
    with pytest.raises(DataError, match=r"bad.csv:3: timestamp is missing or not a finite"):
        prepare_out_of_core(path, threads=1)
    path.write_text("user,item\na,b\n")
    with pytest.raises(DataError, match="no column 'user_id'"):
        prepare_out_of_core(path, threads=1)
    with pytest.raises(DataError, match="reads .inter"):
        prepare_out_of_core(tmp_path / "log.txt")
    with pytest.raises(ConfigError, match="data.memory_limit"):
        DataConfig(engine="duckdb", memory_limit="lots")
    assert not any(cache_dir().iterdir())  # nothing half-written is left behind
