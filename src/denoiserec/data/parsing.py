"""Parsing helpers shared by the readers: text in, checked columns out, every problem a one-line
``DataError("<path>:<line>: <problem>")`` naming where it is."""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from denoiserec.errors import DataError

Lines = Sequence[int] | None  # file line of each row, or None where rows have no line (Parquet)

_PANDAS_FIELDS = re.compile(r"Expected (\d+) fields in line (\d+), saw (\d+)")


def check_file(path: Path) -> None:
    if not path.exists():
        raise DataError(f"{path}: file not found")
    if not path.is_file():
        raise DataError(f"{path}: not a regular file")


def error_summary(exc: Exception) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def read_text(path: Path) -> str:
    """The whole file as text; missing, unreadable, non-UTF-8 and blank files are errors."""
    check_file(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not UTF-8 text (bad byte at offset {exc.start})") from exc
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc.strerror})") from exc
    if not text.strip():
        raise DataError(f"{path}: empty file")
    return text


def location(path: Path, lines: Lines, row: int) -> str:
    return f"{path}: row {row + 1}" if lines is None else f"{path}:{lines[row]}"


def str_array(values: Sequence[str]) -> np.ndarray:
    return np.asarray(values, dtype=object)


def float_column(path: Path, lines: Lines, values: pd.Series, name: str) -> np.ndarray:
    """float64 numbers (datetimes: seconds since the epoch); missing or non-numeric is an error."""
    if pd.api.types.is_datetime64_any_dtype(values):
        values = (values - pd.Timestamp(0, tz=values.dt.tz)) / pd.Timedelta(seconds=1)
    numbers = pd.to_numeric(values, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    bad = np.flatnonzero(~np.isfinite(numbers))
    if len(bad):
        value = values.iloc[bad[0]]
        problem = f"{name} '{value}' is not a finite number"
        if pd.isna(value):
            problem = f"missing {name}"
        raise DataError(f"{location(path, lines, bad[0])}: {problem}")
    return numbers


def token_column(path: Path, lines: Lines, values: pd.Series, name: str) -> np.ndarray:
    """A column as a str array; a missing (or, in text files, empty) cell is an error."""
    missing = np.flatnonzero(values.isna().to_numpy())
    if len(missing):
        raise DataError(f"{location(path, lines, missing[0])}: missing {name}")
    return str_array(values.astype(str).tolist())


def fields_per_line(text: str, separator: str) -> np.ndarray:
    """How many ``separator``-separated fields each line of ``text`` has (vectorised)."""
    codes = np.frombuffer(text.encode(), dtype=np.uint8)
    line_ends = np.append(np.flatnonzero(codes == ord("\n")), len(codes))
    separators_before = np.searchsorted(np.flatnonzero(codes == ord(separator)), line_ends)
    return np.diff(separators_before, prepend=0) + 1


def strict_frame(path: Path, text: str, separator: str, width: int, skip: int) -> pd.DataFrame:
    """The lines of ``text`` after the first ``skip`` as str columns, each exactly ``width`` wide.

    Checking the field counts first gives an exact line for ragged rows, which pandas would pad
    with NaN or fold into an index instead.
    """
    text = text.rstrip("\n")
    counts = fields_per_line(text, separator)
    if len(counts) <= skip:
        raise DataError(f"{path}: header only, no data rows")
    bad = skip + np.flatnonzero(counts[skip:] != width)
    if len(bad):
        raise DataError(
            f"{path}:{bad[0] + 1}: expected {width} fields separated by {separator!r}, "
            f"found {counts[bad[0]]}"
        )
    return parse_csv(
        path, io.StringIO(text), sep=separator, header=None, skiprows=skip, quoting=csv.QUOTE_NONE
    )


def parse_csv(path: Path, source: str | Path | io.StringIO, **options: object) -> pd.DataFrame:
    """``pd.read_csv`` with every cell a str (only empty cells missing), errors as DataError."""
    try:
        frame = pd.read_csv(
            source, dtype=str, keep_default_na=False, na_values=[""], skip_blank_lines=False,
            **options,
        )
    except pd.errors.EmptyDataError as exc:
        raise DataError(f"{path}: empty file") from exc
    except pd.errors.ParserError as exc:
        found = _PANDAS_FIELDS.search(str(exc))
        if found is None:
            raise DataError(f"{path}: cannot parse: {error_summary(exc)}") from exc
        expected, line, saw = found.groups()
        raise DataError(f"{path}:{line}: expected {expected} fields, found {saw}") from exc
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: cannot read: {error_summary(exc)}") from exc
    return frame
