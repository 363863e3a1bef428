"""Datasets known by name, found under the data directory, plus any path and ``synthetic``.

The data directory is ``$DENOISEREC_DATA`` or, by default, ``~/.cache/denoiserec/data``
(``$XDG_CACHE_HOME`` honoured). denoiserec never downloads data: the licences of MovieLens and
Amazon forbid redistribution, so place the files there yourself (layout in ``KNOWN``).
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from denoiserec.config import check_choice, check_range
from denoiserec.data import readers
from denoiserec.data.log import Interactions, RawLog
from denoiserec.data.preprocess import TIME_ORDERS, build_interactions
from denoiserec.data.shipped import read_with_shipped_test, shipped_test_path
from denoiserec.data.synthetic import SyntheticConfig, generate
from denoiserec.errors import ConfigError, DataError

DUPLICATES = ("keep", "first", "last")
ENGINES = ("pandas", "duckdb")


@dataclass(frozen=True)
class DataConfig:
    """Which log to read and how to preprocess it."""

    dataset: str = "synthetic"
    """Known name (``denoiserec datasets``) or a path to a log file."""
    max_len: int = 50
    """Most recent items an input sequence holds (RecBole ``MAX_ITEM_LIST_LENGTH``)."""
    rating_threshold: float | None = None
    """Keep interactions with rating >= this; ``None`` keeps all (RecBole ``threshold: ~``)."""
    user_core: int = 0
    """Iterated k-core: drop users with fewer interactions (0 = off)."""
    item_core: int = 0
    """Iterated k-core: drop items with fewer interactions (0 = off)."""
    duplicates: str = "keep"
    """Repeated (user, item) pairs: ``keep`` all, or keep the ``first`` or ``last`` only."""
    time_order: str = "recbole"
    """Sort key: ``recbole`` = float32 min-max timestamp (RecBole 1.2.1), ``exact`` = raw."""
    columns: dict[str, str] = field(default_factory=dict)
    """Column mapping for CSV/TSV/Parquet: role (user, item, timestamp, rating, behaviour) ->
    column name."""
    engine: str = "pandas"
    """``pandas`` reads the whole file into memory; ``duckdb`` preprocesses out of core (atomic
    ``.inter``, CSV, TSV, Parquet) into a cache of memory-mapped arrays keyed by the file's
    content and these settings (``data/outofcore.py``; ``pip install 'denoiserec[scale]'``)."""
    memory_limit: str = "4GB"
    """``duckdb`` only: DuckDB's memory limit while preprocessing (it spills to disk beyond)."""

    def __post_init__(self) -> None:
        check_range("data.max_len", self.max_len, 1)
        check_range("data.user_core", self.user_core, 0)
        check_range("data.item_core", self.item_core, 0)
        if self.rating_threshold is not None:
            check_range("data.rating_threshold", self.rating_threshold)
        check_choice("data.duplicates", self.duplicates, DUPLICATES)
        check_choice("data.time_order", self.time_order, TIME_ORDERS)
        check_choice("data.engine", self.engine, ENGINES)
        if not re.fullmatch(r"\d+(\.\d+)?\s*[KMGT]i?B", self.memory_limit):
            raise ConfigError(f"data.memory_limit must be a size like 4GB or 512MiB, got "
                              f"'{self.memory_limit}'")


@dataclass(frozen=True)
class KnownDataset:
    """A dataset known by name: where it lives under the data directory and how to read it."""

    name: str
    relative_path: str
    reader: Callable[[Path], RawLog]
    description: str
    buy_tokens: str = ""
    """Its purchase behaviour's raw tokens, where they are not ``buy``: named in the error of
    ``protocol=target`` (the setting's default is not chosen by dataset name)."""


KNOWN: dict[str, KnownDataset] = {
    d.name: d
    for d in (
        KnownDataset("ml-100k", "ml-100k/ml-100k.inter", readers.read_atomic,
                     "MovieLens 100K, RecBole atomic file (the recbole protocol's reference)"),
        KnownDataset("ml-1m", "ML-1M/ml-1m.txt", readers.read_line_per_user,
                     "MovieLens 1M, one line per user, time-ordered"),
        KnownDataset("beauty", "Beauty/Beauty.txt", readers.read_line_per_user,
                     "Amazon Beauty 5-core (S3-Rec preprocessing), one line per user"),
        KnownDataset("retailrocket", "RetailRocket-multibehavior/retail_beh.train.inter",
                     readers.read_atomic, "RetailRocket multi-behaviour (view/cart/buy) sequences",
                     buy_tokens="0,3"),
        KnownDataset("taobao", "Taobao-UserBehavior-sample/UserBehavior_sample.csv",
                     readers.read_taobao, "Taobao UserBehavior sample (pv/cart/fav/buy), 43 users"),
    )
}


def data_dir() -> Path:
    """Where named datasets are looked for."""
    if os.environ.get("DENOISEREC_DATA"):
        return Path(os.environ["DENOISEREC_DATA"]).expanduser()
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return cache / "denoiserec" / "data"


def resolve_dataset_path(dataset: str) -> str:
    """A dataset given as the path of an existing file, made absolute (a run folder then finds
    it from any directory); names and missing paths unchanged."""
    if dataset == "synthetic" or dataset in KNOWN or not Path(dataset).expanduser().exists():
        return dataset
    return str(Path(dataset).expanduser().resolve())


def locate(name: str) -> Path:
    """The file of a known dataset, or a clear error saying where it was expected."""
    known = KNOWN[name]
    path = data_dir() / known.relative_path
    if not path.is_file():
        raise DataError(
            f"dataset '{name}' not found: expected {path} (set DENOISEREC_DATA to the folder "
            f"holding '{known.relative_path.split('/')[0]}/')"
        )
    return path


def read_raw(dataset: str, columns: dict[str, str] | None = None,
             shipped_test: bool = False) -> RawLog:
    """The raw log of a known dataset name or a file path; with ``shipped_test``, plus the
    users of the test file shipped beside it (``*.train.*`` -> ``*.test.*``, see
    :mod:`denoiserec.data.shipped`) where there is one."""
    if dataset in KNOWN:
        path = locate(dataset)
        test_path = shipped_test_path(path) if shipped_test else None
        if test_path is not None:
            return read_with_shipped_test(path, test_path, KNOWN[dataset].reader)
        return KNOWN[dataset].reader(path)
    path = Path(dataset).expanduser()
    test_path = shipped_test_path(path) if shipped_test and path.is_file() else None
    if test_path is not None and not columns:
        return read_with_shipped_test(path, test_path, readers.read_log)
    if not path.exists():
        names = ["synthetic", *KNOWN]
        close = difflib.get_close_matches(dataset.lower(), names, n=1, cutoff=0.6)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        raise DataError(f"unknown dataset '{dataset}': not a known name ({', '.join(names)}) "
                        f"and no such file{hint}")
    return readers.read_log(path, columns or None)


def load_dataset(config: DataConfig | str = DataConfig(),  # noqa: B008
                 shipped_test: bool = False) -> Interactions:
    """Read and preprocess a dataset: ``synthetic``, a known name, or a path; with
    ``shipped_test`` (the ``target`` protocol asks for it) a shipped test file's users too."""
    if isinstance(config, str):
        config = DataConfig(dataset=config)
    if config.dataset == "synthetic":
        return generate(SyntheticConfig())
    if config.engine == "duckdb":
        return _load_out_of_core(config, shipped_test)
    raw = read_raw(config.dataset, config.columns, shipped_test)
    name = config.dataset if config.dataset in KNOWN else Path(config.dataset).stem
    return build_interactions(
        raw,
        name=name,
        rating_threshold=config.rating_threshold,
        user_core=config.user_core,
        item_core=config.item_core,
        duplicates=config.duplicates,
        time_order=config.time_order,
    )


def _load_out_of_core(config: DataConfig, shipped_test: bool) -> Interactions:
    """``data.engine=duckdb``: the prepared log from the cache (prepared first if absent)."""
    from denoiserec.data.outofcore import prepare_out_of_core

    known = config.dataset in KNOWN
    path = locate(config.dataset) if known else Path(config.dataset).expanduser()
    if shipped_test and path.is_file() and shipped_test_path(path) is not None:
        raise DataError(f"{path}: a shipped test file is read by data.engine=pandas only")
    if not known and not path.exists():
        read_raw(config.dataset)  # the unknown-dataset error, with its suggestion
    return prepare_out_of_core(
        path, name=config.dataset if known else path.stem, columns=config.columns,
        rating_threshold=config.rating_threshold, user_core=config.user_core,
        item_core=config.item_core, duplicates=config.duplicates,
        time_order=config.time_order, memory_limit=config.memory_limit)
