"""Readers: exact round-trips of small files, one-line errors on malformed ones, real files."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from denoiserec.data.log import RawLog
from denoiserec.data.readers import (
    read_atomic,
    read_line_per_user,
    read_log,
    read_movielens,
    read_table,
    read_taobao,
)
from denoiserec.errors import DataError

Reader = Callable[[Path], RawLog]
Content = str | bytes | pd.DataFrame


def _data_dir() -> Path:
    """The shared real data: ``$DENOISEREC_DATA``, else ``shared/data`` beside the checkout."""
    default = Path(__file__).resolve().parents[2] / "shared" / "data"
    return Path(os.environ.get("DENOISEREC_DATA", default))


def _real_file(relative: str) -> Path:
    path = _data_dir() / relative
    if not path.is_file():
        pytest.skip(f"real data file {relative} not found at {path}")
    return path


def _write(directory: Path, name: str, content: Content) -> Path:
    path = directory / name
    if isinstance(content, pd.DataFrame):
        content.to_parquet(path, engine="pyarrow", index=False)
    elif isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    return path


def _assert_log(
    log: RawLog,
    path: Path,
    users: list[str],
    items: list[str],
    timestamps: list[float] | None = None,
    ratings: list[float] | None = None,
    behaviours: list[str] | None = None,
) -> None:
    assert log.source == str(path)
    for array, expected in ((log.users, users), (log.items, items), (log.behaviours, behaviours)):
        if expected is None:
            assert array is None
            continue
        assert array.dtype == object
        assert all(type(value) is str for value in array)
        assert array.tolist() == expected
    for array, expected in ((log.timestamps, timestamps), (log.ratings, ratings)):
        if expected is None:
            assert array is None
            continue
        assert array.dtype == np.float64
        np.testing.assert_array_equal(array, np.asarray(expected, dtype=np.float64))


def _assert_rejected(reader: Reader, path: Path, phrase: str) -> str:
    """The read fails with a one-line DataError naming the file, and leaves everything as it was."""
    before = (path.read_bytes(), path.stat().st_mtime_ns, sorted(path.parent.iterdir()))
    with pytest.raises(DataError) as caught:
        reader(path)
    message = str(caught.value)
    assert path.name in message, message
    assert phrase in message, message
    assert "\n" not in message
    assert (path.read_bytes(), path.stat().st_mtime_ns, sorted(path.parent.iterdir())) == before
    return message


# ----------------------------------------------------------------------------- round trips

ATOMIC = (
    "user_id:token\titem_id:token\trating:float\ttimestamp:float\tbehavior:token\n"
    "u2\ti9\t4\t300.5\tclick\n"
    "u1\ti9\t5\t100\tbuy\n"
    "u2\ti3\t3\t200\tclick\n"
)


def test_atomic_round_trip(tmp_path: Path) -> None:
    path = _write(tmp_path, "small.inter", ATOMIC)
    _assert_log(
        read_atomic(path), path, ["u2", "u1", "u2"], ["i9", "i9", "i3"],
        timestamps=[300.5, 100, 200], ratings=[4, 5, 3], behaviours=["click", "buy", "click"],
    )


def test_atomic_session_field_and_no_optional_fields(tmp_path: Path) -> None:
    header = "session_id:token\titem_id:token\tname:token_seq\n"
    path = _write(tmp_path, "s.inter", header + "7\t1\ta b\n")
    _assert_log(read_atomic(path), path, ["7"], ["1"])


def test_atomic_multi_behaviour_rows_expand_to_history_then_target(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        "retail.inter",
        "session_id:token\titem_id_list:token_seq\titem_type_list:token_seq\titem_id:token\n"
        "1\t5 6 5\t2 2 1\t5\n"
        "2\t8\t3\t9\n",
    )
    _assert_log(
        read_atomic(path), path,
        users=["1", "1", "1", "1", "2", "2"],
        items=["5", "6", "5", "5", "8", "9"],
        behaviours=["2", "2", "1", "0", "3", "0"],
    )


def test_line_per_user_round_trip(tmp_path: Path) -> None:
    path = _write(tmp_path, "seq.txt", "10 3 1 2\n\n2 7 7\n1 5\n")
    _assert_log(
        read_line_per_user(path), path,
        ["10", "10", "10", "2", "2", "1"], ["3", "1", "2", "7", "7", "5"],
    )


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("u.data", "196\t242\t3\t881250949\n186\t302\t3.5\t891717742\n"),
        ("ratings.dat", "196::242::3::881250949\n186::302::3.5::891717742\n"),
    ],
)
def test_movielens_round_trip(tmp_path: Path, name: str, text: str) -> None:
    path = _write(tmp_path, name, text)
    _assert_log(
        read_movielens(path), path, ["196", "186"], ["242", "302"],
        timestamps=[881250949, 891717742], ratings=[3, 3.5],
    )


TABLE = pd.DataFrame(
    {
        "who": ["b", "a", "b"],
        "what": ["007", "x", "7"],
        "when": [30.0, 10.0, 20.5],
        "kind": ["cart", "pv", "buy"],
    }
)
MAPPING = {"user": "who", "item": "what", "timestamp": "when", "behaviour": "kind"}


@pytest.mark.parametrize("name", ["t.csv", "t.tsv", "t.tab", "t.parquet", "t.pq"])
def test_table_round_trip_with_mapping(tmp_path: Path, name: str) -> None:
    if name.endswith(("parquet", "pq")):
        path = _write(tmp_path, name, TABLE)
    else:
        path = tmp_path / name
        TABLE.to_csv(path, sep="," if name.endswith("csv") else "\t", index=False)
    _assert_log(
        read_table(path, MAPPING), path, ["b", "a", "b"], ["007", "x", "7"],
        timestamps=[30, 10, 20.5], behaviours=["cart", "pv", "buy"],
    )


def test_table_default_columns(tmp_path: Path) -> None:
    path = _write(
        tmp_path, "d.csv", "item_id,extra,user_id,rating,behaviour\n1,z,u,4.5,view\n2,z,v,1,buy\n"
    )
    _assert_log(
        read_table(path, {}), path, ["u", "v"], ["1", "2"], ratings=[4.5, 1],
        behaviours=["view", "buy"],
    )


def test_parquet_datetimes_become_epoch_seconds(tmp_path: Path) -> None:
    frame = pd.DataFrame(
        {
            "user_id": [1, 2],
            "item_id": [3, 4],
            "timestamp": pd.to_datetime([10, 86_400], unit="s", utc=True),
        }
    )
    path = _write(tmp_path, "dt.parquet", frame)
    _assert_log(read_table(path), path, ["1", "2"], ["3", "4"], timestamps=[10, 86400])


def test_taobao_round_trip(tmp_path: Path) -> None:
    path = _write(tmp_path, "UserBehavior.csv", "1,2268318,2520377,pv,1511544070\n1,5,6,buy,7\n")
    _assert_log(
        read_taobao(path), path, ["1", "1"], ["2268318", "5"],
        timestamps=[1511544070, 7], behaviours=["pv", "buy"],
    )


def test_every_format_gives_the_same_log(tmp_path: Path) -> None:
    """The same interactions written in each text format read back identically."""
    users, items = ["1", "1", "2"], ["5", "3", "5"]
    paths = [
        _write(tmp_path, "a.inter", "user_id:token\titem_id:token\n1\t5\n1\t3\n2\t5\n"),
        _write(tmp_path, "b.txt", "1 5 3\n2 5\n"),
        _write(tmp_path, "c.csv", "user_id,item_id\n1,5\n1,3\n2,5\n"),
        _write(tmp_path, "d.tsv", "user_id\titem_id\n1\t5\n1\t3\n2\t5\n"),
    ]
    for path in paths:
        _assert_log(read_log(path), path, users, items)


@pytest.mark.parametrize(
    ("name", "text", "reader"),
    [
        ("x.inter", ATOMIC, read_atomic),
        ("x.txt", "1 2\n", read_line_per_user),
        ("u.data", "1\t2\t3\t4\n", read_movielens),
        ("ratings.dat", "1::2::3::4\n", read_movielens),
        ("x.dat", "1::2::3::4\n", read_movielens),
        ("UserBehavior_sample.csv", "1,2,3,pv,4\n", read_taobao),
        ("x.csv", "user_id,item_id\n1,2\n", read_table),
    ],
)
def test_read_log_dispatches_by_name(tmp_path: Path, name: str, text: str, reader: Reader) -> None:
    path = _write(tmp_path, name, text)
    direct, dispatched = reader(path), read_log(path)
    for field in ("users", "items", "timestamps", "ratings", "behaviours"):
        expected, got = getattr(direct, field), getattr(dispatched, field)
        assert (expected is None and got is None) or expected.tolist() == got.tolist()


# ------------------------------------------------------------------------- malformed files

HEADER = "user_id:token\titem_id:token\trating:float\n"


@pytest.mark.parametrize(
    ("name", "content", "phrase"),
    [
        ("untyped.inter", "user_id\titem_id\n1\t2\n", "header field 'user_id' is not name:type"),
        ("badtype.inter", "user_id:int\titem_id:token\n1\t2\n", "is not name:type"),
        ("noitem.inter", "user_id:token\trating:float\n1\t2\n", ":1: no item_id field"),
        ("nouser.inter", "item_id:token\n1\n", "no user_id or session_id field"),
        ("dup.inter", "user_id:token\tuser_id:token\n1\t2\n", "duplicate field names"),
        ("ragged.inter", HEADER + "1\t2\t3\n1\t2\n", ":3: expected 3 fields separated by '\\t'"),
        ("blank.inter", HEADER + "1\t2\t3\n\n1\t2\t3\n", ":3: expected 3 fields"),
        ("rating.inter", HEADER + "1\t2\t3\n1\t2\tgood\n", ":3: rating 'good' is not a finite"),
        ("emptyrating.inter", HEADER + "1\t2\t\n", ":2: missing rating"),
        ("emptyitem.inter", HEADER + "1\t\t3\n", ":2: missing item_id"),
        (
            "seq.inter",
            "session_id:token\titem_id_list:token_seq\titem_type_list:token_seq\titem_id:token\n"
            "1\t5 6\t2 2\t5\n2\t5 6\t2\t5\n",
            ":3: item_id_list has 2 items but item_type_list has 1 types",
        ),
        ("empty.inter", "", ": empty file"),
        ("headeronly.inter", HEADER, "header only, no data rows"),
        ("latin1.inter", HEADER.encode() + b"caf\xe9\t2\t3\n", "not UTF-8 text"),
    ],
)
def test_atomic_rejects(tmp_path: Path, name: str, content: Content, phrase: str) -> None:
    _assert_rejected(read_atomic, _write(tmp_path, name, content), phrase)


@pytest.mark.parametrize(
    ("name", "content", "phrase"),
    [
        ("lonely.txt", "1 2 3\n7\n", ":2: user '7' has no items"),
        ("twice.txt", "1 2 3\n2 4\n1 5\n", ":3: duplicate user '1' (first on line 1)"),
        ("empty.txt", "", ": empty file"),
        ("blank.txt", " \n\n", ": empty file"),
        ("binary.txt", b"1 \xff\xfe\n", "not UTF-8 text"),
    ],
)
def test_line_per_user_rejects(tmp_path: Path, name: str, content: Content, phrase: str) -> None:
    _assert_rejected(read_line_per_user, _write(tmp_path, name, content), phrase)


@pytest.mark.parametrize(
    ("name", "content", "phrase"),
    [
        ("u.data", "1\t2\t3\t4\n1\t2\t3\n", ":2: expected 4 fields"),
        ("ratings.dat", "1::2::3::4\n1::2::3::4::5\n", ":2: expected 4 fields"),
        ("short.dat", "1::2::3\n", ":1: expected 4 fields"),
        ("rating.dat", "1::2::3::4\n1::2::five::4\n", ":2: rating 'five' is not a finite number"),
        ("time.dat", "1::2::3::4\n1::2::3::soon\n", ":2: timestamp 'soon' is not a finite"),
        ("missing.dat", "1::2::3::4\n1::::3::4\n", ":2: missing item"),
        ("empty.dat", "", ": empty file"),
    ],
)
def test_movielens_rejects(tmp_path: Path, name: str, content: Content, phrase: str) -> None:
    _assert_rejected(read_movielens, _write(tmp_path, name, content), phrase)


BROKEN_USERS = pd.DataFrame({"user_id": ["a", None], "item_id": ["1", "2"]})


@pytest.mark.parametrize(
    ("name", "content", "columns", "phrase"),
    [
        ("m.csv", "user_id,item_id\n1,2\n", {"user": "uid", "item": "item_id"},
         "no column 'uid' for user (columns: user_id, item_id)"),
        ("d.csv", "uid,item_id\n1,2\n", {}, "no column 'user_id' for user (columns: uid, item_id)"),
        ("r.csv", "user_id,item_id\n1,2\n", {"user": "user_id", "it": "item_id"},
         "unknown column role(s) ['it']"),
        ("i.csv", "user_id,item_id\n1,2\n", {"user": "user_id"}, "must name a 'item' column"),
        ("nan.csv", "user_id,item_id\n1,2\n,3\n", {}, ":3: missing user_id"),
        ("nan.parquet", BROKEN_USERS, {}, ": row 2: missing user_id"),
        ("t.tsv", "user_id\titem_id\ttimestamp\n1\t2\t3\n1\t2\tnoon\n", {},
         ":3: timestamp 'noon' is not a finite number"),
        ("ragged.csv", "user_id,item_id\n1,2\n1,2,3\n", {}, ":3: expected 2 fields, found 3"),
        ("h.csv", "user_id,item_id\n", {}, "empty table (no rows)"),
        ("e.csv", "", {}, ": empty file"),
        ("junk.parquet", b"not a parquet file", {}, "cannot read as Parquet"),
        ("x.json", "{}", {}, "not a table"),
    ],
)
def test_table_rejects(
    tmp_path: Path, name: str, content: Content, columns: dict[str, str], phrase: str
) -> None:
    path = _write(tmp_path, name, content)
    _assert_rejected(lambda p: read_table(p, columns), path, phrase)


@pytest.mark.parametrize(
    ("content", "phrase"),
    [
        ("1,2,3,pv,4\n1,2,3,click,5\n", ":2: unknown behaviour 'click' (expected pv, cart"),
        ("1,2,3,pv\n", ":1: expected 5 fields separated by ','"),
        ("1,2,3,pv,4\n1,2,3,pv,4,5\n", ":2: expected 5 fields"),
        ("1,2,3,pv,4\n1,2,3,pv,later\n", ":2: timestamp 'later' is not a finite number"),
        ("", ": empty file"),
    ],
)
def test_taobao_rejects(tmp_path: Path, content: str, phrase: str) -> None:
    _assert_rejected(read_taobao, _write(tmp_path, "UserBehavior.csv", content), phrase)


def test_read_log_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "absent.inter"
    with pytest.raises(DataError) as caught:
        read_log(path)
    assert str(caught.value) == f"{path}: file not found"
    assert not path.exists()


@pytest.mark.parametrize(
    ("name", "content", "columns", "phrase"),
    [
        ("log.json", "{}", None, "unknown log format (known: .inter"),
        ("log.inter", ATOMIC, {"user": "user_id"}, "column mapping applies only to CSV"),
        ("log", "1 2\n", None, "unknown log format"),
    ],
)
def test_read_log_rejects(
    tmp_path: Path, name: str, content: str, columns: dict[str, str] | None, phrase: str
) -> None:
    path = _write(tmp_path, name, content)
    _assert_rejected(lambda p: read_log(p, columns), path, phrase)


def test_read_log_rejects_a_directory(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="not a regular file"):
        read_log(tmp_path / "")


# ------------------------------------------------------------------------------ real files


def test_real_ml_100k() -> None:
    log = read_log(_real_file("ml-100k/ml-100k.inter"))
    assert len(log) == 100_000
    assert len(set(log.users)) == 943 and len(set(log.items)) == 1_682
    assert (log.users[0], log.items[0], log.timestamps[0]) == ("196", "242", 881250949.0)
    assert sorted(set(log.ratings)) == [1, 2, 3, 4, 5]


def test_real_beauty() -> None:
    log = read_log(_real_file("Beauty/Beauty.txt"))
    assert len(log) == 198_502
    assert len(set(log.users)) == 22_363
    assert log.items[:5].tolist() == ["1", "2", "3", "4", "5"]


def test_real_ml_1m() -> None:
    log = read_log(_real_file("ML-1M/ml-1m.txt"))
    assert len(log) == 1_000_209
    assert len(set(log.users)) == 6_040 and len(set(log.items)) == 3_706


def test_real_retailrocket_train() -> None:
    log = read_log(_real_file("RetailRocket-multibehavior/retail_beh.train.inter"))
    assert len(set(log.users)) == 30_690
    assert len(log) == 513_831  # PROVENANCE.md: events including targets
    kinds, counts = np.unique(log.behaviours.astype(str), return_counts=True)
    # type 0: 48,184 in the histories plus one purchase target per row
    assert dict(zip(kinds.tolist(), counts.tolist(), strict=True)) == {
        "0": 48_184 + 30_690, "1": 97_022, "2": 331_227, "3": 6_708,
    }
    assert log.timestamps is None


def test_real_taobao() -> None:
    log = read_log(_real_file("Taobao-UserBehavior-sample/UserBehavior_sample.csv"))
    assert len(log) == 4_321
    assert set(log.behaviours) == {"pv", "cart", "fav", "buy"}
    assert (log.users[0], log.items[0], log.timestamps[0]) == ("1", "2268318", 1511544070.0)
