"""Result folders read into typed rows for ``denoiserec report``.

Two kinds of folder are understood:

- a folder of cells (``denoiserec compare``, ``benchmarks/converged.sh``, the campaign): every
  run folder under ``cells/`` with a finished ``metrics.json``; cells named ``<group>-seedN``
  are seeds of one group;
- a study (``denoiserec tune``): ``tune.json``, ``trials/NNNN`` run folders and ``best.json``.

Every row keeps the protocol and the code version (commit) its run recorded.
"""

from __future__ import annotations

import json
import math
import re
import statistics
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from denoiserec.errors import ConfigError
from denoiserec.report.stats import mean_interval, sample_sd, seed_differences

SEED_SUFFIX = re.compile(r"-seed(\d+)$")
@dataclass(frozen=True)
class Run:
    """One finished run folder: its settings and what it recorded."""

    path: Path
    group: str
    seed: int
    model: str
    dataset: str
    protocol: str
    protocol_config: dict[str, Any]
    noise: float
    valid_metric: str
    best_epoch: int
    valid: dict[str, float]
    test: dict[str, float]
    history: list[dict[str, Any]]
    code: dict[str, Any]

    @property
    def commit(self) -> str:
        commit = self.code.get("commit")
        if not commit:
            return "unknown (recorded before commits were)"
        pinned = " (the folder's pinned checkout)" if self.code.get("pinned") else ""
        return commit[:10] + ("+dirty" if self.code.get("dirty") else "") + pinned


@dataclass(frozen=True)
class Group:
    """The seeds of one setting (one row of a table)."""

    name: str
    runs: list[Run]

    @property
    def first(self) -> Run:
        return self.runs[0]

    def values(self, split: str, metric: str) -> dict[int, float]:
        """seed -> the metric on ``split`` (``valid`` at the best epoch, or ``test``)."""
        return {r.seed: getattr(r, split)[metric] for r in self.runs
                if metric in getattr(r, split)}

    def mean_sd(self, split: str, metric: str) -> tuple[float, float]:
        values = list(self.values(split, metric).values())
        if not values:
            return math.nan, math.nan
        return statistics.mean(values), sample_sd(values)


@dataclass(frozen=True)
class PairedInterval:
    """Mean difference of a group against a reference over their common seeds, with a 95 %
    paired t interval (None with fewer than 2 common seeds)."""

    difference: float
    low: float | None
    high: float | None
    seeds: int


def paired_interval(group: Group, reference: Group, split: str, metric: str
                    ) -> PairedInterval | None:
    diffs = list(seed_differences(group.values(split, metric),
                                  reference.values(split, metric)).values())
    if not diffs:
        return None
    mean, half = mean_interval(diffs)
    if len(diffs) < 2:
        return PairedInterval(mean, None, None, 1)
    return PairedInterval(mean, mean - half, mean + half, len(diffs))


@dataclass(frozen=True)
class Trial:
    number: int
    state: str
    value: float | None
    params: dict[str, Any]
    run: Run | None


@dataclass(frozen=True)
class Folder:
    """A result folder: groups of seeds (cells) or a study's trials and best trial."""

    path: Path
    kind: str
    """``cells`` or ``tune``."""
    groups: list[Group] = field(default_factory=list)
    trials: list[Trial] = field(default_factory=list)
    best: dict[str, Any] | None = None


def read_run(path: Path, group: str | None = None) -> Run | None:
    """A finished run folder as a :class:`Run`; None when it has not finished."""
    metrics_path, config_path = path / "metrics.json", path / "config.yaml"
    if not metrics_path.is_file() or not config_path.is_file():
        return None
    metrics = json.loads(metrics_path.read_text())
    if not metrics.get("finished") and not metrics.get("epochs"):
        return None
    config = yaml.safe_load(config_path.read_text())
    match = SEED_SUFFIX.search(path.name)
    noise = config.get("noise") or {}
    return Run(path=path, group=group or (path.name[:match.start()] if match else path.name),
               seed=int(config["train"]["seed"]), model=metrics["model"],
               dataset=metrics["dataset"], protocol=metrics["protocol"],
               protocol_config=metrics.get("protocol_config", {}),
               noise=float(noise.get("ratio", 0.0) or 0.0),
               valid_metric=metrics["valid_metric"], best_epoch=metrics["best_epoch"],
               valid=metrics.get("best_valid", {}), test=metrics.get("test") or {},
               history=metrics["epochs"], code=metrics.get("code") or {})


def _pinned_code(path: Path) -> dict[str, Any]:
    """The folder's ``code.json`` (``{"commit", "dirty"}`` of the checkout a campaign is pinned
    to, written when it is resumed), marked ``pinned``; {} without one."""
    record = path / "code.json"
    return {**json.loads(record.read_text()), "pinned": True} if record.is_file() else {}


def _cells(path: Path) -> Folder:
    groups: dict[str, list[Run]] = {}
    pinned = _pinned_code(path)
    for cell in sorted(p for p in (path / "cells").iterdir() if p.is_dir()):
        run = read_run(cell)
        if run is not None and run.test:  # finished and tested
            if pinned and not run.code.get("commit"):  # code too old to record its commit
                run = replace(run, code=pinned)
            groups.setdefault(run.group, []).append(run)
    if not groups:
        raise ConfigError(f"{path}: no finished cell under cells/")
    return Folder(path=path, kind="cells",
                  groups=[Group(name, sorted(runs, key=lambda r: r.seed))
                          for name, runs in groups.items()])


def _study(path: Path) -> Folder:
    trials = []
    csv_path = path / "trials.csv"
    if not csv_path.is_file():
        raise ConfigError(f"{path}: a study with no trials.csv yet")
    import csv

    spec = json.loads((path / "tune.json").read_text())["spec"]
    keys = list(spec["space"])
    with open(csv_path, newline="") as handle:
        for row in csv.DictReader(handle):
            run = (read_run(path / row["run_dir"], group=f"trial {row['number']}")
                   if row.get("run_dir") else None)
            trials.append(Trial(number=int(row["number"]), state=row["state"],
                                value=float(row["value"]) if row["value"] else None,
                                params={k: row.get(k, "") for k in keys}, run=run))
    best_path = path / "best.json"
    best = json.loads(best_path.read_text()) if best_path.is_file() else None
    return Folder(path=path, kind="tune", trials=trials, best=best)


def read_folder(path: Path) -> Folder:
    """A compare / converged / campaign folder (``cells/``) or a study (``tune.json``)."""
    if not path.is_dir():
        raise ConfigError(f"{path}: no such folder")
    if (path / "tune.json").is_file():
        return _study(path)
    if (path / "cells").is_dir():
        return _cells(path)
    raise ConfigError(f"{path}: neither a comparison (no cells/) nor a study (no tune.json)")
