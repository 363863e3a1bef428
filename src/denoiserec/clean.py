"""``denoiserec clean``: score every interaction of a log with a trained run, drop the noise.

Reads the log through the same readers as training (:func:`denoiserec.data.readers.read_log_file`:
every format, the ``.inter`` file the model was trained on included), keeping every column of
every row. Each user's interactions are ordered as training orders them (the run's
``data.time_order``; file order on ties or without timestamps) and scored with the run's best
model (its own noise scores, or the surprise baseline of :mod:`denoiserec.noise.scores`); the
scores go back to the rows they belong to. Two files are written:

* ``OUT.scored.<ext>``: the input rows, in input order, plus a ``noise_score`` column
  (``noise_score:float`` in an ``.inter`` file; for a one-line-per-user ``.txt`` log, whose
  lines have no columns, ``OUT.scored.tsv`` with ``user_id``, ``item_id``, ``noise_score``);
* ``OUT``: the input rows that were not flagged, in the input's format and columns.

The input is read with the run's data settings; ``--set data.columns=...`` (a table's column
mapping) and ``--set data.time_order=...`` change how. Items the model never saw cannot be
scored: the command refuses such a log unless told to ``keep`` those rows (score left empty,
never dropped) or ``drop`` them. The input is never overwritten, and an existing output is only
replaced with ``force``.
"""

from __future__ import annotations

import csv
import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from denoiserec.atomic import atomic_write_bytes
from denoiserec.config import build_dataclass, merge, parse_override
from denoiserec.data import Interactions
from denoiserec.data.datasets import DataConfig
from denoiserec.data.log import PAD_TOKEN
from denoiserec.data.preprocess import time_key
from denoiserec.data.readers import Layout, is_table, read_log_file
from denoiserec.errors import ConfigError, DataError
from denoiserec.fingerprints import load_run_config
from denoiserec.noise.scores import has_native_scores, score_log
from denoiserec.run import load_log, restore
from denoiserec.runconfig import SHORT_KEYS

UNKNOWN_POLICIES = ("refuse", "keep", "drop")
INPUT_SETTINGS = ("columns", "time_order")  # the data settings that apply to clean's input


@dataclass(frozen=True)
class CleanReport:
    """What ``clean`` did."""

    scored_path: Path
    cleaned_path: Path
    interactions: int
    flagged: int
    unknown: int
    users: int
    users_affected: int
    scorer: str


def input_settings(data: DataConfig, overrides: Sequence[str], input_path: Path) -> DataConfig:
    """The run's data settings for reading ``input_path``, with ``--set data.columns`` /
    ``data.time_order``; the run's column mapping applies to a table input only."""
    values: dict[str, object] = {}
    for text in overrides:
        keys, value = parse_override(text, SHORT_KEYS)
        if keys[0] != "data" or len(keys) < 2 or keys[1] not in INPUT_SETTINGS:
            raise ConfigError(f"clean --set {text}: only data.columns and data.time_order apply "
                              f"to the input; {'.'.join(keys)} is the run's (its config.yaml)")
        merge(values, keys[1:], value)
    base = dataclasses.asdict(data)
    if "columns" not in values and not is_table(input_path):
        base["columns"] = {}
    return build_dataclass(DataConfig, {**base, **values}, "data")


def scored_path_for(output: Path, input_path: Path) -> Path:
    """``OUT.scored.<ext>``; a TSV for a one-line-per-user ``.txt`` input."""
    suffix = ".tsv" if input_path.suffix.lower() == ".txt" else output.suffix
    return output.with_name(f"{output.stem}.scored{suffix}")


def _write_rows(path: Path, rows: pd.DataFrame, layout: Layout,
                header: tuple[str, ...] | None) -> None:
    """``rows`` in ``layout`` (header fields given), atomically."""
    if layout.separator is None:
        atomic_write_bytes(path, lambda handle: rows.to_parquet(handle, index=False))
        return
    if layout.per_user_lines:
        users = rows.iloc[:, 0].to_numpy(str)
        items = rows.iloc[:, 1].to_numpy(str)
        lines = {user: [user] for user in pd.unique(users)}
        for user, item in zip(users, items, strict=True):
            lines[user].append(item)
        text = "".join(" ".join(tokens) + "\n" for tokens in lines.values())
    else:
        separator = "\t" if layout.separator == "::" else layout.separator
        text = rows.to_csv(sep=separator, index=False, header=list(header) if header else False,
                           quoting=csv.QUOTE_MINIMAL if layout.quoted else csv.QUOTE_NONE)
        text = text.replace("\t", "::") if layout.separator == "::" else text
    atomic_write_bytes(path, lambda handle: handle.write(text.encode()))


def _write_scored(path: Path, rows: pd.DataFrame, layout: Layout, scores: np.ndarray) -> None:
    if layout.per_user_lines:
        scored = Layout("\t", ("user_id", "item_id", "noise_score"))
        _write_rows(path, rows.assign(noise_score=scores), scored, scored.header)
        return
    header = layout.header
    if header is not None:
        typed = path.suffix.lower() == ".inter"
        header = (*header, "noise_score:float" if typed else "noise_score")
    _write_rows(path, rows.assign(noise_score=scores), layout, header)


def _sequences(users: np.ndarray, items: np.ndarray, times: np.ndarray | None,
               item_tokens: np.ndarray, time_order: str) -> tuple[Interactions, np.ndarray]:
    """Interactions of the scorable rows ordered as training orders them (users by first
    appearance, then time key, then file row), and each row's position in that log."""
    codes, tokens = pd.factorize(users)
    keys = [np.arange(len(users))]
    if times is not None:
        keys.append(time_key(times, time_order))
    order = np.lexsort([*keys, codes])
    counts = np.bincount(codes, minlength=len(tokens))
    log = Interactions(offsets=np.concatenate([[0], np.cumsum(counts)]).astype(np.int64),
                       items=items[order], user_tokens=np.asarray(tokens, dtype=object),
                       item_tokens=item_tokens, name="input")
    position = np.empty(len(order), dtype=np.int64)
    position[order] = np.arange(len(order))
    return log, position


def _check_arguments(input_path: Path, output_path: Path, threshold: float | None,
                     drop_ratio: float | None, unknown: str, force: bool) -> None:
    if (threshold is None) == (drop_ratio is None):
        raise DataError("give exactly one of --threshold or --drop-ratio")
    if threshold is not None and not math.isfinite(threshold):
        raise DataError(f"--threshold must be a finite number, got {threshold}")
    if drop_ratio is not None and not 0.0 <= drop_ratio < 1.0:
        raise DataError(f"--drop-ratio must be in [0, 1), got {drop_ratio}")
    if unknown not in UNKNOWN_POLICIES:
        raise DataError(f"--unknown must be one of {', '.join(UNKNOWN_POLICIES)}, got "
                        f"'{unknown}'")
    if output_path.suffix.lower() != input_path.suffix.lower():
        raise DataError(f"{output_path}: the cleaned log keeps the input's format; give --output "
                        f"a name ending in {input_path.suffix or '(no suffix)'}")
    for out in (output_path, scored_path_for(output_path, input_path)):
        if out.resolve() == input_path.resolve():
            raise DataError(f"{out}: output would overwrite the input log; choose another --output")
        if out.is_dir():
            raise DataError(f"{out} is a directory; --output names the cleaned log file")
        if out.exists() and not force:
            raise DataError(f"{out} exists; pass --force to replace it")


def clean(run_dir: Path, input_path: Path, output_path: Path, threshold: float | None = None,
          drop_ratio: float | None = None, unknown: str = "refuse", force: bool = False,
          overrides: Sequence[str] = (), keep_last: int = 0) -> CleanReport:
    """Score and clean ``input_path`` with the run in ``run_dir`` (see the module docstring);
    ``keep_last=k`` never flags a user's last k interactions (2: leave-one-out's valid and test
    targets, so that a model retrained on the cleaned log is tested on the same targets)."""
    run_dir, input_path, output_path = Path(run_dir), Path(input_path), Path(output_path)
    _check_arguments(input_path, output_path, threshold, drop_ratio, unknown, force)
    if keep_last < 0:
        raise DataError(f"--keep-last must be 0 or more, got {keep_last}")
    config = load_run_config(run_dir)
    settings = input_settings(config.data, overrides, input_path)
    log_file = read_log_file(input_path, settings.columns or None)
    if log_file.rows is None:
        raise DataError(f"{input_path}: one sample per row (item_id_list); clean needs a log "
                        "of one interaction per row")
    raw, rows = log_file.raw, log_file.rows

    # the vocabulary the model was trained with (a shipped test file's items included)
    training_log = load_log(config)
    vocabulary = {str(token): index for index, token in enumerate(training_log.item_tokens)
                  if token != PAD_TOKEN}
    item_ids = pd.Series(raw.items).map(vocabulary)
    known = item_ids.notna().to_numpy()
    if not known.all() and unknown == "refuse":
        raise DataError(f"{input_path}: {int((~known).sum())} rows have items the model does not "
                        f"know (e.g. '{raw.items[~known][0]}'); pass --unknown keep or --unknown "
                        "drop")
    trainer = restore(run_dir, config, training_log)
    log, position = _sequences(raw.users[known], item_ids[known].to_numpy(np.int64),
                               None if raw.timestamps is None else raw.timestamps[known],
                               training_log.item_tokens, settings.time_order)
    scores = np.full(len(raw), np.nan)
    scores[np.flatnonzero(known)] = score_log(trainer.model, log, config.data.max_len,
                                              trainer.device)[position]

    candidates = known.copy()
    candidates[np.flatnonzero(known)] = ~log.last_rows(keep_last)[position]
    flagged = flag_rows(scores, candidates, threshold, drop_ratio)
    dropped = flagged | (~known if unknown == "drop" else np.zeros(len(raw), bool))
    scored_path = scored_path_for(output_path, input_path)
    _write_scored(scored_path, rows, log_file.layout, scores)
    _write_rows(output_path, rows.loc[~dropped], log_file.layout, log_file.layout.header)
    users = pd.Series(raw.users)
    return CleanReport(scored_path=scored_path, cleaned_path=output_path,
                       interactions=len(raw), flagged=int(flagged.sum()),
                       unknown=int((~known).sum()), users=int(users.nunique()),
                       users_affected=int(users[dropped].nunique()),
                       scorer="native" if has_native_scores(trainer.model) else "surprise")


def flag_rows(scores: np.ndarray, candidates: np.ndarray, threshold: float | None,
              drop_ratio: float | None) -> np.ndarray:
    """(N,) the rows to drop among ``candidates``: scoring at least ``threshold``, or the
    ``drop_ratio`` share of the candidates with the highest scores (ties: the earlier row)."""
    if threshold is not None:
        return candidates & (np.nan_to_num(scores, nan=-np.inf) >= threshold)
    rows = np.flatnonzero(candidates)
    count = int(round(drop_ratio * len(rows)))
    ranked = rows[np.argsort(-scores[rows], kind="stable")][:count]
    flagged = np.zeros(len(scores), dtype=bool)
    flagged[ranked] = True
    return flagged
