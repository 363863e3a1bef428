"""``denoiserec clean``: score every interaction of a log with a trained run, drop the noise.

Reads a CSV / TSV / Parquet log (all its columns are kept), orders each user's interactions by
time (file order on ties or without a timestamp column), scores each interaction with the run's
best model (its own noise scores, or the surprise baseline of :mod:`denoiserec.noise.scores`),
and writes two files:

* ``OUT.scored.<ext>``: the input rows, in input order, plus a ``noise_score`` column;
* ``OUT``: the input rows that were not flagged, same columns as the input.

Items the model never saw cannot be scored: the command refuses such a log unless told to
``keep`` those rows (score left empty, never dropped) or ``drop`` them. The input is never
overwritten, and an existing output is only replaced with ``force``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from denoiserec.atomic import atomic_write_bytes
from denoiserec.data import Interactions, load_dataset
from denoiserec.data.log import PAD_TOKEN
from denoiserec.errors import DataError
from denoiserec.noise.scores import has_native_scores, score_log
from denoiserec.run import load_run_config, restore

UNKNOWN_POLICIES = ("refuse", "keep", "drop")


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


def _separator(path: Path) -> str:
    return "\t" if path.suffix.lower() in (".tsv", ".tab", ".inter") else ","


def read_frame(path: Path) -> pd.DataFrame:
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    try:
        if path.suffix.lower() in (".parquet", ".pq"):
            frame = pd.read_parquet(path)
        else:
            frame = pd.read_csv(path, sep=_separator(path), dtype=str, keep_default_na=False)
    except Exception as err:  # pandas/pyarrow raise many types for unreadable files
        raise DataError(f"{path}: cannot read the log ({str(err).splitlines()[0]})") from None
    if frame.empty:
        raise DataError(f"{path}: the log has no rows")
    return frame


def write_frame(frame: pd.DataFrame, path: Path) -> None:
    if path.suffix.lower() in (".parquet", ".pq"):
        atomic_write_bytes(path, lambda handle: frame.to_parquet(handle, index=False))
    else:
        text = frame.to_csv(sep=_separator(path), index=False)
        atomic_write_bytes(path, lambda handle: handle.write(text.encode()))


def _column(frame: pd.DataFrame, columns: dict[str, str], role: str, path: Path,
            required: bool) -> str | None:
    name = columns.get(role, f"{role}_id" if role in ("user", "item") else role)
    if name in frame.columns:
        return name
    if required:
        raise DataError(f"{path}: no '{name}' column for the {role} (columns: "
                        f"{', '.join(map(str, frame.columns))}); map it with data.columns")
    return None


def scored_path_for(output: Path) -> Path:
    return output.with_name(f"{output.stem}.scored{output.suffix}")


def _sequences(users: np.ndarray, items: np.ndarray, times: np.ndarray | None,
               item_tokens: np.ndarray) -> tuple[Interactions, np.ndarray]:
    """Interactions of the scorable rows, and each of their positions in that log."""
    codes, tokens = pd.factorize(users)
    keys = [np.arange(len(users))] + ([times] if times is not None else []) + [codes]
    order = np.lexsort(keys)
    counts = np.bincount(codes, minlength=len(tokens))
    log = Interactions(offsets=np.concatenate([[0], np.cumsum(counts)]).astype(np.int64),
                       items=items[order], user_tokens=np.asarray(tokens, dtype=object),
                       item_tokens=item_tokens, name="input")
    position = np.empty(len(order), dtype=np.int64)
    position[order] = np.arange(len(order))
    return log, position


def clean(run_dir: Path, input_path: Path, output_path: Path, threshold: float | None = None,
          drop_ratio: float | None = None, unknown: str = "refuse",
          force: bool = False) -> CleanReport:
    """Score and clean ``input_path`` with the run in ``run_dir`` (see the module docstring)."""
    if (threshold is None) == (drop_ratio is None):
        raise DataError("give exactly one of --threshold or --drop-ratio")
    if drop_ratio is not None and not 0.0 <= drop_ratio < 1.0:
        raise DataError(f"--drop-ratio must be in [0, 1), got {drop_ratio}")
    if unknown not in UNKNOWN_POLICIES:
        raise DataError(f"--unknown must be one of {UNKNOWN_POLICIES}, got '{unknown}'")
    scored_path = scored_path_for(output_path)
    for out in (output_path, scored_path):
        if out.resolve() == input_path.resolve():
            raise DataError(f"{out}: output would overwrite the input log; choose another --output")
        if out.exists() and not force:
            raise DataError(f"{out} exists; pass --force to replace it")

    config = load_run_config(run_dir)
    frame = read_frame(input_path)
    user_col = _column(frame, config.data.columns, "user", input_path, True)
    item_col = _column(frame, config.data.columns, "item", input_path, True)
    time_col = _column(frame, config.data.columns, "timestamp", input_path, False)

    training_log = load_dataset(config.data)  # the vocabulary the model was trained with
    vocabulary = {str(token): index for index, token in enumerate(training_log.item_tokens)
                  if token != PAD_TOKEN}
    item_ids = frame[item_col].astype(str).map(vocabulary)
    known = item_ids.notna().to_numpy()
    if not known.all() and unknown == "refuse":
        example = frame[item_col][~known].iloc[0]
        raise DataError(f"{input_path}: {int((~known).sum())} rows have items the model does not "
                        f"know (e.g. '{example}'); pass --unknown keep or --unknown drop")
    times = None
    if time_col is not None:
        times = pd.to_numeric(frame[time_col], errors="coerce").to_numpy(np.float64)
        if np.isnan(times).any():
            raise DataError(f"{input_path}: column '{time_col}' has non-numeric timestamps")

    trainer = restore(run_dir, config, training_log)
    log, position = _sequences(frame[user_col].astype(str).to_numpy()[known],
                               item_ids[known].to_numpy(np.int64),
                               None if times is None else times[known],
                               training_log.item_tokens)
    scores_log = score_log(trainer.model, log, config.data.max_len, trainer.device)
    scores = np.full(len(frame), np.nan)
    scores[np.flatnonzero(known)] = scores_log[position]

    flagged = _flag(scores, known, threshold, drop_ratio)
    dropped = flagged | (~known if unknown == "drop" else np.zeros(len(frame), bool))
    write_frame(frame.assign(noise_score=scores), scored_path)
    write_frame(frame.loc[~dropped], output_path)
    users = frame[user_col].astype(str)
    return CleanReport(scored_path=scored_path, cleaned_path=output_path,
                       interactions=len(frame), flagged=int(flagged.sum()),
                       unknown=int((~known).sum()), users=int(users.nunique()),
                       users_affected=int(users[dropped].nunique()),
                       scorer="native" if has_native_scores(trainer.model) else "surprise")


def _flag(scores: np.ndarray, known: np.ndarray, threshold: float | None,
          drop_ratio: float | None) -> np.ndarray:
    if threshold is not None:
        return known & (np.nan_to_num(scores, nan=-np.inf) >= threshold)
    rows = np.flatnonzero(known)
    count = int(round(drop_ratio * len(rows)))
    ranked = rows[np.argsort(-scores[rows], kind="stable")][:count]
    flagged = np.zeros(len(scores), dtype=bool)
    flagged[ranked] = True
    return flagged
