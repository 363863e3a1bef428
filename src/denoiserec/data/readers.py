"""Readers: one interaction file in, one ``RawLog`` out (raw ids as str, rows in file order).

Formats: RecBole atomic ``.inter`` (with MBHT's multi-behaviour rows), one line per user
``.txt``, MovieLens ``u.data`` / ``ratings.dat``, CSV / TSV / Parquet tables and Taobao's
``UserBehavior.csv``; ``read_log`` picks one by file name. Every problem raises a one-line
``DataError("<path>:<line>: <problem>")``. Readers never create, modify or cache files, and
refuse a file too large for the available memory before reading it.

``read_log_file`` reads the same files through the same code for ``clean``, keeping every
column of every row and how the file is laid out, so that rows can be written back as they were.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from itertools import chain
from pathlib import Path

import numpy as np
import pandas as pd

from denoiserec.data.log import RawLog
from denoiserec.data.parsing import (
    Lines,
    check_declared_types,
    check_file,
    check_size,
    check_unique_header,
    error_summary,
    float_column,
    location,
    parse_csv,
    read_text,
    str_array,
    strict_frame,
    token_column,
)
from denoiserec.errors import DataError

ROLES = ("user", "item", "timestamp", "rating", "behaviour")
TAOBAO_COLUMNS = ("user_id", "item_id", "category_id", "behavior_type", "timestamp")
TAOBAO_BEHAVIOURS = ("pv", "cart", "fav", "buy")
# MBHT appends each row's target with behaviour type '0', its buy type (see the RetailRocket
# PROVENANCE.md); we keep that token so the raw behaviours match the published files.
SEQUENCE_TARGET_BEHAVIOUR = "0"

_TAOBAO_ROLES = {"user": "user_id", "item": "item_id", "timestamp": "timestamp",
                 "behaviour": "behavior_type"}
_ATOMIC_TYPES = ("token", "float", "token_seq", "float_seq")
_USER_FIELDS = ("user_id", "session_id")
_OPTIONAL_DEFAULTS = {"timestamp": ("timestamp",), "rating": ("rating",),
                      "behaviour": ("behavior", "behaviour", "item_type", "behavior_type")}
_TABLE_SEPARATORS = {".csv": ",", ".tsv": "\t", ".tab": "\t", ".parquet": None, ".pq": None}
_KNOWN_FORMATS = ".inter, .txt, u.data, .dat, UserBehavior*.csv, .csv, .tsv, .tab, .parquet, .pq"


@dataclass(frozen=True)
class Layout:
    """How a log file is laid out: what writing its rows back in the same format needs."""

    separator: str | None
    """Field separator; None for Parquet."""
    header: tuple[str, ...] | None = None
    """The header line's fields as written in the file (typed in ``.inter``); None: no header."""
    per_user_lines: bool = False
    """One line per user, ``user item item ...`` (``.txt``)."""
    quoted: bool = False
    """Fields may be quoted (CSV and TSV tables); else every field is written as it is."""


@dataclass(frozen=True)
class LogFile:
    """A log file read for rewriting: its log, and every column of every row as read."""

    raw: RawLog
    rows: pd.DataFrame | None
    """One row per interaction of ``raw``, in the same order, every column of the file (None
    where rows are not interactions: the atomic one-sample-per-row layout)."""
    layout: Layout


def _pick(columns: Iterable[object], names: Sequence[str]) -> str | None:
    present = set(columns)
    return next((name for name in names if name in present), None)


def _present_optional_roles(columns: Iterable[object]) -> dict[str, str]:
    """The optional roles whose default column names occur in ``columns``."""
    columns = list(columns)
    picked = {role: _pick(columns, names) for role, names in _OPTIONAL_DEFAULTS.items()}
    return {role: name for role, name in picked.items() if name is not None}


def _atomic_field(path: Path, field: str) -> str:
    name, colon, kind = field.strip().partition(":")
    if not colon or not name or kind not in _ATOMIC_TYPES:
        raise DataError(
            f"{path}:1: header field '{field}' is not name:type (types: {', '.join(_ATOMIC_TYPES)})"
        )
    return name


def _require(path: Path, header: list[str], names: Sequence[str]) -> str:
    name = _pick(header, names)
    if name is None:
        raise DataError(f"{path}:1: no {' or '.join(names)} field (header has {', '.join(header)})")
    return name


def read_atomic(path: str | Path) -> RawLog:
    """Read a RecBole atomic ``.inter`` file (tab-separated, typed ``name:type`` header).

    Fields used: ``user_id`` (or ``session_id``), ``item_id``, ``timestamp``, ``rating`` and a
    behaviour field (``behavior``, ``behaviour``, ``item_type`` or ``behavior_type``). A file
    with an ``item_id_list`` field holds one sample per row (MBHT / RecBole benchmark layout):
    each row becomes its history items followed by its ``item_id`` target, one user per row,
    with behaviours from ``item_type_list`` (the target gets '0') and no timestamps.

    Args:
        path: the ``.inter`` file.

    Returns:
        The log in file order.
    """
    return _atomic_file(Path(path)).raw


def _atomic_file(path: Path) -> LogFile:
    text = read_text(path)
    fields = tuple(text.partition("\n")[0].split("\t"))
    header = [_atomic_field(path, field) for field in fields]
    if len(set(header)) != len(header):
        raise DataError(f"{path}:1: duplicate field names in header {header}")
    frame = strict_frame(path, text, "\t", len(header), skip=1)
    del text
    frame.columns = header
    lines = range(2, len(frame) + 2)
    check_declared_types(path, frame, fields, lines)
    mapping = {"user": _require(path, header, _USER_FIELDS),
               "item": _require(path, header, ("item_id",))}
    layout = Layout("\t", fields)
    if "item_id_list" in header:
        return LogFile(_atomic_samples(path, frame, lines, mapping["user"]), None, layout)
    raw = _frame_log(path, frame, mapping | _present_optional_roles(header), lines)
    return LogFile(raw, frame, layout)


def _atomic_samples(path: Path, frame: pd.DataFrame, lines: Lines, user: str) -> RawLog:
    """Expand ``history + target`` rows; types from ``item_type_list``, the target gets '0'."""
    users = token_column(path, lines, frame[user], user)
    targets = token_column(path, lines, frame["item_id"], "item_id")
    histories = [text.split() for text in frame["item_id_list"].fillna("")]
    lengths = [len(history) + 1 for history in histories]
    pairs = zip(histories, targets, strict=True)
    items = chain.from_iterable(history + [target] for history, target in pairs)
    behaviours = None
    if "item_type_list" in frame.columns:
        kinds = [text.split() for text in frame["item_type_list"].fillna("")]
        for line, history, kind in zip(lines, histories, kinds, strict=True):
            if len(kind) != len(history):
                raise DataError(
                    f"{path}:{line}: item_id_list has {len(history)} items but item_type_list "
                    f"has {len(kind)} types"
                )
        behaviours = str_array(
            list(chain.from_iterable(kind + [SEQUENCE_TARGET_BEHAVIOUR] for kind in kinds))
        )
    return RawLog(
        users=np.repeat(users, lengths),
        items=str_array(list(items)),
        behaviours=behaviours,
        source=str(path),
    )


def read_line_per_user(path: str | Path) -> RawLog:
    """Read a ``user item item ...`` file (Beauty.txt, ml-1m.txt): one user per line.

    Items are whitespace-separated tokens in time order; the file has no timestamps.

    Args:
        path: the text file.

    Returns:
        The log, users in file order, each user's items in line order.
    """
    path = Path(path)
    first_line: dict[str, int] = {}
    sequences: list[list[str]] = []
    for n, line in enumerate(read_text(path).splitlines(), 1):
        tokens = line.split()
        if not tokens:
            continue
        if len(tokens) == 1:
            raise DataError(f"{path}:{n}: user '{tokens[0]}' has no items")
        if tokens[0] in first_line:
            raise DataError(
                f"{path}:{n}: duplicate user '{tokens[0]}' (first on line {first_line[tokens[0]]})"
            )
        first_line[tokens[0]] = n
        sequences.append(tokens)
    lengths = [len(tokens) - 1 for tokens in sequences]
    return RawLog(
        users=np.repeat(str_array(list(first_line)), lengths),
        items=str_array(list(chain.from_iterable(tokens[1:] for tokens in sequences))),
        source=str(path),
    )


def _frame_log(path: Path, frame: pd.DataFrame, mapping: Mapping[str, str], lines: Lines) -> RawLog:
    """A RawLog from the table columns that ``mapping`` assigns to each role."""
    if frame.empty:
        raise DataError(f"{path}: empty table (no rows)")
    def column(role: str, convert: Callable[..., np.ndarray]) -> np.ndarray | None:
        name = mapping.get(role)
        return None if name is None else convert(path, lines, frame[name], name)

    return RawLog(
        users=column("user", token_column),
        items=column("item", token_column),
        timestamps=column("timestamp", float_column),
        ratings=column("rating", float_column),
        behaviours=column("behaviour", token_column),
        source=str(path),
    )


def read_movielens(path: str | Path) -> RawLog:
    """Read MovieLens ``u.data`` (tab-separated) or ``ratings.dat`` (``::``-separated).

    Both have no header and four fields: user, item, rating, timestamp.

    Args:
        path: the ratings file; the separator is detected from its first line.

    Returns:
        The log with ratings and timestamps, in file order.
    """
    return _movielens_file(Path(path)).raw


def _movielens_file(path: Path) -> LogFile:
    text = read_text(path)
    separator = "::" if "::" in text.partition("\n")[0] else "\t"
    if separator == "::":
        text = text.replace("::", "\t")  # lets pandas' C parser read ratings.dat
    names = ("user", "item", "rating", "timestamp")
    frame = strict_frame(path, text, "\t", len(names), skip=0)
    del text
    frame.columns = list(names)
    raw = _frame_log(path, frame, {name: name for name in names}, range(1, len(frame) + 1))
    return LogFile(raw, frame, Layout(separator))


def _table_columns(path: Path, frame: pd.DataFrame, columns: Mapping[str, str]) -> dict[str, str]:
    """Role -> column name: ``columns`` checked against the table, or the default names."""
    unknown = sorted(set(columns) - set(ROLES))
    if unknown:
        raise DataError(f"{path}: unknown column role(s) {unknown} (roles: {', '.join(ROLES)})")
    mapping = dict(columns) or {"user": "user_id", "item": "item_id"}
    if not columns:
        mapping |= _present_optional_roles(frame.columns)
    for role in ("user", "item"):
        if role not in mapping:
            raise DataError(f"{path}: the column mapping must name a '{role}' column")
    for role, name in mapping.items():
        if name not in frame.columns:
            available = ", ".join(str(column) for column in frame.columns)
            raise DataError(f"{path}: no column '{name}' for {role} (columns: {available}); "
                            "map them with --set data.columns='{user: COL, item: COL}'")
    return mapping


def read_table(path: str | Path, columns: Mapping[str, str] | None = None) -> RawLog:
    """Read a CSV (``.csv``), TSV (``.tsv``, ``.tab``) or Parquet (``.parquet``, ``.pq``) table.

    Args:
        path: the table; CSV and TSV files need a header line.
        columns: role -> column name for the roles ``user``, ``item`` (required),
            ``timestamp``, ``rating`` and ``behaviour``. Empty or None: the columns
            ``user_id``, ``item_id``, and where present ``timestamp``, ``rating`` and the
            first of ``behavior``, ``behaviour``, ``item_type``, ``behavior_type``.

    Returns:
        The log in table order; datetime columns become float seconds since the epoch.
    """
    return _table_file(Path(path), columns).raw


def _table_file(path: Path, columns: Mapping[str, str] | None) -> LogFile:
    suffix = path.suffix.lower()
    if suffix not in _TABLE_SEPARATORS:
        raise DataError(f"{path}: not a table (suffixes: {', '.join(_TABLE_SEPARATORS)})")
    check_file(path)
    separator = _TABLE_SEPARATORS[suffix]
    if separator is None:
        check_size(path, "parquet")
        try:
            frame = pd.read_parquet(path, engine="pyarrow")
        except (OSError, ValueError) as exc:
            raise DataError(f"{path}: cannot read as Parquet: {error_summary(exc)}") from exc
        lines = None
    else:
        check_size(path)
        check_unique_header(path, separator)
        frame = parse_csv(path, path, sep=separator)
        lines = range(2, len(frame) + 2)
    raw = _frame_log(path, frame, _table_columns(path, frame, columns or {}), lines)
    header = tuple(str(name) for name in frame.columns)
    return LogFile(raw, frame, Layout(separator, header, quoted=separator is not None))


def read_taobao(path: str | Path) -> RawLog:
    """Read Taobao's headerless ``UserBehavior.csv`` (user, item, category, behaviour, time).

    Args:
        path: the CSV file; behaviours must be ``pv``, ``cart``, ``fav`` or ``buy``.

    Returns:
        The log with unix-second timestamps and behaviours, in file order.
    """
    return _taobao_file(Path(path)).raw


def _taobao_file(path: Path) -> LogFile:
    frame = strict_frame(path, read_text(path), ",", len(TAOBAO_COLUMNS), skip=0)
    frame.columns = list(TAOBAO_COLUMNS)
    lines = range(1, len(frame) + 1)
    log = _frame_log(path, frame, _TAOBAO_ROLES, lines)
    unknown = np.flatnonzero(~pd.Series(log.behaviours).isin(TAOBAO_BEHAVIOURS).to_numpy())
    if len(unknown):
        raise DataError(
            f"{location(path, lines, unknown[0])}: "
            f"unknown behaviour '{log.behaviours[unknown[0]]}' "
            f"(expected {', '.join(TAOBAO_BEHAVIOURS)})"
        )
    return LogFile(log, frame, Layout(","))


def _line_per_user_file(path: Path) -> LogFile:
    raw = read_line_per_user(path)
    rows = pd.DataFrame({"user_id": raw.users, "item_id": raw.items}, dtype=object)
    return LogFile(raw, rows, Layout(" ", per_user_lines=True))


def _reader_for(path: Path) -> Callable[[Path], LogFile] | None:
    name, suffix = path.name.lower(), path.suffix.lower()
    if suffix == ".csv" and name.startswith("userbehavior"):
        return _taobao_file
    if suffix == ".inter":
        return _atomic_file
    if name == "u.data" or suffix == ".dat":
        return _movielens_file
    if suffix == ".txt":
        return _line_per_user_file
    return None


def is_table(path: str | Path) -> bool:
    """A CSV / TSV / Parquet table, the format that takes a column mapping."""
    path = Path(path)
    return _reader_for(path) is None and path.suffix.lower() in _TABLE_SEPARATORS


def read_log_file(path: str | Path, columns: Mapping[str, str] | None = None) -> LogFile:
    """Read any supported interaction file as ``read_log`` does, keeping its rows and layout.

    Args:
        path: any file ``read_log`` reads.
        columns: the role -> column mapping of ``read_table``; only tables take one.

    Returns:
        The file's log, its rows (every column) and its layout.
    """
    path = Path(path)
    check_file(path)
    reader = _reader_for(path)
    if is_table(path):
        return _table_file(path, columns)
    if reader is None:
        raise DataError(f"{path}: unknown log format (known: {_KNOWN_FORMATS})")
    if columns:
        raise DataError(f"{path}: a column mapping applies only to CSV, TSV and Parquet tables")
    return reader(path)


def read_log(path: str | Path, columns: Mapping[str, str] | None = None) -> RawLog:
    """The log of any supported file, the reader chosen from its name: ``.inter`` (atomic),
    ``u.data`` / ``.dat`` (MovieLens), ``.txt`` (line per user), ``UserBehavior*.csv`` (Taobao),
    ``.csv`` / ``.tsv`` / ``.tab`` / ``.parquet`` / ``.pq`` (table; ``columns``: the role ->
    column mapping of ``read_table``, for tables only)."""
    path = Path(path)
    if _reader_for(path) is _line_per_user_file and not columns:
        return read_line_per_user(path)  # without the rows table only clean needs
    return read_log_file(path, columns).raw
