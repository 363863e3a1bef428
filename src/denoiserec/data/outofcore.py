"""Out-of-core preprocessing on DuckDB: a log file in, ``Interactions`` out, in bounded memory.

The steps and their result are those of :func:`denoiserec.data.preprocess.build_interactions`
(RecBole 1.2.1's order: rating threshold, iterated k-core, ids remapped in order of first
appearance, stable sort by (user, time key, file row), duplicates), done as SQL over an on-disk
DuckDB database that spills to disk past ``memory_limit``. The result is streamed in record
batches into the flat arrays of :mod:`denoiserec.data.cache`, written once and memory-mapped.

Why DuckDB and not Polars' streaming engine: every step here is a plain SQL statement (the
iterated k-core is a ``DELETE`` repeated until it removes nothing, first appearance is
``min(rowid)``, the time order an ``ORDER BY``), DuckDB's sort, join and aggregate all spill
to disk under one explicit ``memory_limit``, and a table's ``rowid`` is its file order, which
RecBole's remapping and stable sort need. Polars' streaming engine falls back to in-memory
execution for some operations without saying so, so its peak is harder to bound.

Formats: RecBole atomic ``.inter`` files (one interaction per row) and CSV / TSV / Parquet
tables with the column roles of :func:`denoiserec.data.readers.read_table`.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from denoiserec.data.cache import (
    PreparedArrays,
    cache_dir,
    cache_key,
    load_prepared,
    write_prepared,
)
from denoiserec.data.log import PAD_TOKEN, Interactions
from denoiserec.data.preprocess import DUPLICATE_POLICIES, TIME_ORDERS
from denoiserec.data.readers import _OPTIONAL_DEFAULTS, _USER_FIELDS, _table_columns
from denoiserec.errors import DataError

OUT_OF_CORE_SUFFIXES = (".inter", ".csv", ".tsv", ".tab", ".parquet", ".pq")
_DELIMITERS = {".inter": "\t", ".csv": ",", ".tsv": "\t", ".tab": "\t"}
FETCH_ROWS = 1 << 20  # rows per record batch streamed out of DuckDB


def _duckdb() -> Any:
    try:
        import duckdb
    except ImportError:
        raise DataError("data.engine=duckdb needs DuckDB: pip install 'denoiserec[scale]'"
                        ) from None
    return duckdb


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _scan(path: Path) -> str:
    """The DuckDB table function reading ``path`` (every CSV field as text, as the readers)."""
    suffix = path.suffix.lower()
    if suffix in (".parquet", ".pq"):
        return f"read_parquet({_literal(str(path))})"
    quote = ", quote='', escape=''" if suffix == ".inter" else ""
    return (f"read_csv({_literal(str(path))}, delim={_literal(_DELIMITERS[suffix])}, "
            f"header=true, all_varchar=true{quote})")


def _roles(path: Path, names: list[str], columns: Mapping[str, str]) -> dict[str, str]:
    """Role -> column name, as the in-memory readers pick them."""
    if path.suffix.lower() != ".inter":
        return _table_columns(path, pd.DataFrame(columns=names), columns)
    if columns:
        raise DataError(f"{path}: a column mapping applies only to CSV, TSV and Parquet tables")
    fields = {name.partition(":")[0]: name for name in names}
    if "item_id_list" in fields:
        raise DataError(f"{path}: one-sample-per-row atomic files (item_id_list) are not read "
                        "by data.engine=duckdb; use data.engine=pandas")
    mapping = {}
    for role, candidates in (("user", _USER_FIELDS), ("item", ("item_id",)),
                             *_OPTIONAL_DEFAULTS.items()):
        found = next((fields[name] for name in candidates if name in fields), None)
        if found is None and role in ("user", "item"):
            raise DataError(f"{path}:1: no {' or '.join(candidates)} field "
                            f"(header has {', '.join(fields)})")
        if found is not None:
            mapping[role] = found
    return mapping


def _number(name: str, kind: str) -> str:
    if kind.startswith("TIMESTAMP"):
        return f"epoch_us({_quote(name)}) / 1e6"
    if kind == "VARCHAR":  # trim(): a bare cast is pushed into the CSV reader, which then
        return f"TRY_CAST(trim({_quote(name)}) AS DOUBLE)"  # fails without naming the column
    return f"TRY_CAST({_quote(name)} AS DOUBLE)"


class _Job:
    """One preprocessing run: a DuckDB connection on a scratch database beside the cache."""

    def __init__(self, path: Path, scratch: Path, memory_limit: str, threads: int) -> None:
        self.path = path
        self.con = _duckdb().connect(str(scratch / "work.duckdb"))
        self.sql(f"SET memory_limit={_literal(memory_limit)}")
        self.sql(f"SET temp_directory={_literal(str(scratch / 'spill'))}")
        self.sql("SET preserve_insertion_order=true")
        if threads:
            self.sql(f"SET threads={threads}")

    def sql(self, query: str) -> Any:
        try:
            return self.con.execute(query)
        except Exception as err:  # DuckDB's conversion, IO and parser errors
            raise self.error(err) from None

    def batches(self, query: str) -> Iterator[Any]:
        """The query's rows as Arrow record batches of ``FETCH_ROWS``, streamed."""
        try:
            yield from self.con.sql(query).to_arrow_reader(FETCH_ROWS)
        except Exception as err:
            raise self.error(err) from None

    def error(self, err: Exception) -> DataError:
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        return DataError(f"{self.path}: {first}")

    def value(self, query: str) -> Any:
        return self.sql(query).fetchall()[0][0]

    def first_bad_row(self, condition: str, what: str) -> None:
        row = self.value(f"SELECT min(rowid) FROM raw WHERE {condition}")
        if row is not None:
            header = 0 if self.path.suffix.lower() in (".parquet", ".pq") else 1
            where = f"row {row + 1}" if not header else f"{row + 2}"
            raise DataError(f"{self.path}:{where}: {what}")


def _load_raw(job: _Job, columns: Mapping[str, str]) -> dict[str, str]:
    """Table ``raw(u, i[, t][, r][, b])`` in file order (its rowid); returns the roles."""
    described = job.sql(f"DESCRIBE SELECT * FROM {_scan(job.path)}").fetchall()
    kinds = {str(row[0]): str(row[1]) for row in described}
    roles = _roles(job.path, list(kinds), columns)
    select = [f"CAST({_quote(roles['user'])} AS VARCHAR) AS u",
              f"CAST({_quote(roles['item'])} AS VARCHAR) AS i"]
    for role, alias in (("timestamp", "t"), ("rating", "r")):
        if role in roles:
            select.append(f"{_number(roles[role], kinds[roles[role]])} AS {alias}")
    if "behaviour" in roles:
        select.append(f"CAST({_quote(roles['behaviour'])} AS VARCHAR) AS b")
    job.sql(f"CREATE TABLE raw AS SELECT {', '.join(select)} FROM {_scan(job.path)}")
    if job.value("SELECT count(*) FROM raw") == 0:
        raise DataError(f"{job.path}: the log has no interactions")
    for alias, role in (("u", "user"), ("i", "item"), ("b", "behaviour")):
        if role in roles:
            job.first_bad_row(f"{alias} IS NULL", f"missing {roles[role]}")
    for alias, role in (("t", "timestamp"), ("r", "rating")):
        if role in roles:
            job.first_bad_row(f"{alias} IS NULL OR NOT isfinite({alias})",
                              f"{roles[role]} is missing or not a finite number")
    return roles


def _filter(job: _Job, roles: dict[str, str], rating_threshold: float | None,
            user_core: int, item_core: int) -> None:
    """Table ``f(row, u, i[, t][, b])``: the rows surviving threshold and iterated k-core."""
    keep = ["rowid AS row", "u", "i"] + [a for a, r in (("t", "timestamp"), ("b", "behaviour"))
                                         if r in roles]
    where = ""
    if rating_threshold is not None:
        if "rating" not in roles:
            raise DataError(f"{job.path}: rating_threshold is set but the log has no ratings")
        where = f" WHERE r >= {float(rating_threshold)!r}"
    job.sql(f"CREATE TABLE f AS SELECT {', '.join(keep)} FROM raw{where}")
    job.sql("DROP TABLE raw")
    if user_core > 1 or item_core > 1:
        job.sql("CREATE TABLE g AS SELECT row, u, i FROM f")
        while True:  # both counts on the same rows, as preprocess.k_core; the fixpoint is unique
            dropped = job.value(
                f"DELETE FROM g WHERE u IN (SELECT u FROM g GROUP BY u HAVING count(*) < "
                f"{user_core}) OR i IN (SELECT i FROM g GROUP BY i HAVING count(*) < "
                f"{item_core})")
            if not dropped:
                break
        job.sql("DELETE FROM f WHERE row NOT IN (SELECT row FROM g)")
        job.sql("DROP TABLE g")
    if job.value("SELECT count(*) FROM f") == 0:
        raise DataError(f"{job.path}: no interactions left after filtering")


def _vocabularies(job: _Job, has_behaviours: bool) -> tuple[np.ndarray, np.ndarray, tuple | None]:
    """Tables ``users(u, code)`` and ``items(i, code)`` numbered by first appearance (items
    from 1); the tokens in code order, and the sorted behaviour tokens (table ``kinds``)."""
    tokens = []
    for table, column, first in (("users", "u", 0), ("items", "i", 1)):
        job.sql(f"CREATE TABLE {table} AS SELECT {column}, row_number() OVER "
                f"(ORDER BY min(row)) - {1 - first} AS code FROM f GROUP BY {column}")
        tokens.append(job.sql(f"SELECT {column} FROM {table} ORDER BY code").fetchnumpy()[column])
    behaviour_tokens = None
    if has_behaviours:
        job.sql("CREATE TABLE kinds AS SELECT b, row_number() OVER (ORDER BY b) - 1 AS code "
                "FROM (SELECT DISTINCT b FROM f)")
        behaviour_tokens = tuple(str(token) for token in
                                 job.sql("SELECT b FROM kinds ORDER BY code").fetchnumpy()["b"])
    return np.asarray(tokens[0], dtype=str), np.asarray(tokens[1], dtype=str), behaviour_tokens


def _ordered_query(job: _Job, roles: dict[str, str], duplicates: str, time_order: str) -> str:
    """The final rows (user code, item id[, t][, behaviour id]) in (user, key, row) order."""
    has_time, has_kind = "timestamp" in roles, "behaviour" in roles
    key = "0"
    if has_time and time_order == "exact":
        key = "f.t"
    elif has_time:  # RecBole's float32 min-max normalisation (preprocess.time_key)
        low, high = job.sql("SELECT min(t), max(t) FROM f").fetchall()[0]
        span = high - low if high > low else 1.0
        key = f"CAST((f.t - {low!r}) / {span!r} AS FLOAT)"
    joins = "JOIN users USING (u) JOIN items USING (i)" + (
        " JOIN kinds USING (b)" if has_kind else "")
    out = ["users.code AS uc", "items.code AS item"] + (["f.t AS t"] if has_time else []) + (
        ["kinds.code AS kind"] if has_kind else [])
    rows = f"SELECT {', '.join(out)}, {key} AS k, f.row AS row FROM f {joins}"
    if duplicates != "keep":
        direction = "ASC" if duplicates == "first" else "DESC"
        rows += (f" QUALIFY row_number() OVER (PARTITION BY uc, item ORDER BY k {direction}, "
                 f"row {direction}) = 1")
    names = ", ".join(name.split(" AS ")[1] for name in out)
    return f"SELECT {names} FROM ({rows}) ORDER BY uc, k, row"


def _stream(job: _Job, query: str, n_rows: int, n_users: int, arrays: PreparedArrays) -> None:
    """Fill the cache's memory-mapped arrays from the ordered rows, one record batch at a time."""
    counts = np.zeros(n_users, dtype=np.int64)
    done = 0
    for batch in job.batches(query):
        size = batch.num_rows
        users = batch.column("uc").to_numpy()
        counts += np.bincount(users, minlength=n_users)
        arrays.items[done:done + size] = batch.column("item").to_numpy()
        if arrays.timestamps is not None:
            arrays.timestamps[done:done + size] = batch.column("t").to_numpy()
        if arrays.behaviours is not None:
            arrays.behaviours[done:done + size] = batch.column("kind").to_numpy()
        done += size
    assert done == n_rows, (done, n_rows)
    arrays.offsets[0] = 0
    np.cumsum(counts, out=arrays.offsets[1:])


def prepare_out_of_core(path: str | Path, *, name: str = "",
                        columns: Mapping[str, str] | None = None,
                        rating_threshold: float | None = None, user_core: int = 0,
                        item_core: int = 0, duplicates: str = "keep", time_order: str = "recbole",
                        memory_limit: str = "4GB", threads: int = 0,
                        cache_root: Path | None = None) -> Interactions:
    """Preprocess ``path`` with DuckDB into the cache (once) and return it memory-mapped.

    The cache entry is keyed by the file's content and every setting below, so a changed file
    or setting is prepared anew and an unchanged one is read back without DuckDB.

    Args:
        path: an atomic ``.inter`` file or a CSV / TSV / Parquet table.
        name: the dataset name the log carries.
        columns: role -> column name for tables (as ``read_table``).
        rating_threshold, user_core, item_core, duplicates, time_order: as
            :func:`~denoiserec.data.preprocess.build_interactions`.
        memory_limit: DuckDB's memory limit (e.g. ``4GB``); beyond it DuckDB spills to disk.
        threads: DuckDB worker threads; 0 = DuckDB's default (all cores).
        cache_root: where prepared logs live (default :func:`~denoiserec.data.cache.cache_dir`).
    """
    path = Path(path)
    if duplicates not in DUPLICATE_POLICIES:
        raise DataError(f"duplicates must be one of {DUPLICATE_POLICIES}, got '{duplicates}'")
    if time_order not in TIME_ORDERS:
        raise DataError(f"time_order must be one of {TIME_ORDERS}, got '{time_order}'")
    if path.suffix.lower() not in OUT_OF_CORE_SUFFIXES:
        raise DataError(f"{path}: data.engine=duckdb reads {', '.join(OUT_OF_CORE_SUFFIXES)} "
                        "files; use data.engine=pandas for this one")
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    settings = {"columns": dict(columns or {}), "rating_threshold": rating_threshold,
                "user_core": user_core, "item_core": item_core, "duplicates": duplicates,
                "time_order": time_order}
    key = cache_key(path, settings)
    name = name or path.stem
    cached = load_prepared(key, name, cache_root)
    if cached is not None:
        return cached
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="duckdb-", dir=_scratch_root(cache_root)) as scratch:
        job = _Job(path, Path(scratch), memory_limit, threads)
        try:
            roles = _load_raw(job, columns or {})
            _filter(job, roles, rating_threshold, user_core, item_core)
            user_tokens, item_tokens, behaviour_tokens = _vocabularies(job, "behaviour" in roles)
            query = _ordered_query(job, roles, duplicates, time_order)
            n_rows = job.value("SELECT count(*) FROM f" if duplicates == "keep" else
                               "SELECT count(*) FROM (SELECT DISTINCT u, i FROM f)")
            with write_prepared(key, cache_root, n_rows=n_rows, n_users=len(user_tokens),
                                timestamps="timestamp" in roles,
                                behaviours="behaviour" in roles) as arrays:
                _stream(job, query, n_rows, len(user_tokens), arrays)
                arrays.finish(user_tokens=user_tokens,
                              item_tokens=np.concatenate([[PAD_TOKEN], item_tokens]),
                              behaviour_tokens=behaviour_tokens, source=str(path),
                              settings=settings, seconds=time.perf_counter() - started)
        finally:
            job.con.close()
    prepared = load_prepared(key, name, cache_root)
    assert prepared is not None
    return prepared


def _scratch_root(cache_root: Path | None) -> Path:
    root = cache_root or cache_dir()
    root.mkdir(parents=True, exist_ok=True)
    return root
