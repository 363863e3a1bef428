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


# Peak memory of reading a file, in bytes per byte of file (text parsed into str columns:
# measured 25 on ml-100k.inter, 22 on ml-1m.txt; Parquet is compressed, so more).
MEMORY_PER_BYTE = {"text": 25, "parquet": 60}
_CHUNK = 1 << 24  # characters of text checked at once for ragged lines


def check_file(path: Path) -> None:
    if not path.exists():
        raise DataError(f"{path}: file not found")
    if not path.is_file():
        raise DataError(f"{path}: not a regular file")


def available_memory() -> int | None:
    """Bytes of memory available to a new allocation (Linux ``MemAvailable``), None if unknown."""
    try:
        lines = Path("/proc/meminfo").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) * 1024
    return None


def _gib(size: float) -> str:
    return f"{size / 2**30:.1f} GiB"


def check_size(path: Path, kind: str = "text") -> None:
    """Refuse, before reading a byte, a file whose reading would need more memory than is
    available (``MEMORY_PER_BYTE`` times its size)."""
    size = path.stat().st_size
    need, available = size * MEMORY_PER_BYTE[kind], available_memory()
    if available is not None and need > available:
        raise DataError(f"{path}: a {_gib(size)} file; reading it needs about {_gib(need)} of "
                        f"memory and {_gib(available)} is available")


def error_summary(exc: Exception) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def read_text(path: Path) -> str:
    """The whole file as text; missing, unreadable, non-UTF-8 and blank files are errors."""
    check_file(path)
    check_size(path)
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


def _check_widths(path: Path, text: str, separator: str, width: int, skip: int) -> None:
    """Every line after the first ``skip`` has ``width`` fields; checked a chunk of lines at a
    time, so the check needs little memory and stops at the first ragged line."""
    start, lines = 0, 0
    while start <= len(text):
        end = text.find("\n", min(start + _CHUNK, len(text)))
        end = len(text) if end < 0 else end
        counts = fields_per_line(text[start:end], separator)
        bad = np.flatnonzero(counts != width)
        bad = bad[bad + lines >= skip]
        if len(bad):
            raise DataError(
                f"{path}:{lines + bad[0] + 1}: expected {width} fields separated by "
                f"{separator!r}, found {counts[bad[0]]}"
            )
        lines += len(counts)
        start = end + 1
    if lines <= skip:
        raise DataError(f"{path}: header only, no data rows")


def strict_frame(path: Path, text: str, separator: str, width: int, skip: int) -> pd.DataFrame:
    """The lines of ``text`` after the first ``skip`` as str columns, each exactly ``width`` wide.

    Checking the field counts first gives an exact line for ragged rows, which pandas would pad
    with NaN or fold into an index instead.
    """
    text = text.rstrip("\n")
    _check_widths(path, text, separator, width, skip)
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


def check_unique_header(path: Path, separator: str) -> None:
    """A table's header names each column once (pandas would rename a second ``item_id`` to
    ``item_id.1`` and the first would be read silently)."""
    try:
        with open(path, encoding="utf-8-sig", newline="") as handle:
            first = handle.readline()
    except (OSError, UnicodeDecodeError):
        return  # the full read reports it, with its line
    names = next(csv.reader([first], delimiter=separator), [])
    repeated = [name for name in dict.fromkeys(names) if names.count(name) > 1]
    if repeated:
        raise DataError(f"{path}:1: column '{repeated[0]}' appears {names.count(repeated[0])} "
                        "times in the header; give each column its own name")


def check_declared_types(path: Path, frame: pd.DataFrame, fields: Sequence[str],
                         lines: Lines) -> None:
    """Every cell of a column an atomic header declares ``float`` (``float_seq``: every
    space-separated value) is a finite number; ``fields`` are the header's ``name:type``."""
    for name, kind in (field.strip().partition(":")[::2] for field in fields):
        if kind == "float":
            float_column(path, lines, frame[name], name)
        elif kind == "float_seq":
            values = frame[name].fillna("").str.split().explode().dropna()
            numbers = pd.to_numeric(values, errors="coerce").to_numpy(dtype=np.float64,
                                                                    na_value=np.nan)
            bad = np.flatnonzero(~np.isfinite(numbers))
            if len(bad):
                row = frame.index.get_loc(values.index[bad[0]])
                raise DataError(f"{location(path, lines, row)}: {name} value "
                                f"'{values.iloc[bad[0]]}' is not a finite number (declared "
                                "float_seq)")
