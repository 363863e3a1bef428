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

SEED_SUFFIX = re.compile(r"-seed(\d+)$")
# two-sided 95 % Student t quantiles by degrees of freedom (scipy is no dependency)
T95 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306,
       9: 2.262, 10: 2.228, 11: 2.201, 12: 2.179, 13: 2.160, 14: 2.145, 15: 2.131, 16: 2.120,
       17: 2.110, 18: 2.101, 19: 2.093, 20: 2.086, 21: 2.080, 22: 2.074, 23: 2.069, 24: 2.064,
       25: 2.060, 26: 2.056, 27: 2.052, 28: 2.048, 29: 2.045, 30: 2.042, 40: 2.021, 60: 2.000,
       120: 1.980}


def t95(df: int) -> float:
    """The 0.975 quantile of Student's t with ``df`` >= 1 degrees of freedom: the table's
    (3 decimals) up to 30; beyond, the nearest tabulated df below (conservative: the interval
    is at most 1 % too wide)."""
    if df < 1:
        raise ValueError(f"t95 needs at least one degree of freedom, not {df}")
    return T95[max(k for k in T95 if k <= df)]


def sample_sd(values: list[float]) -> float:
    """Sample standard deviation (n - 1); nan with fewer than two values or any nan (an sd
    of one seed is unknown, not 0)."""
    if len(values) < 2 or any(v != v for v in values):
        return math.nan
    return statistics.stdev(values)


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
    a, b = group.values(split, metric), reference.values(split, metric)
    common = sorted(set(a) & set(b))
    if not common:
        return None
    diffs = [a[s] - b[s] for s in common]
    mean = statistics.mean(diffs)
    if len(diffs) < 2:
        return PairedInterval(mean, None, None, 1)
    half = t95(len(diffs) - 1) * sample_sd(diffs) / math.sqrt(len(diffs))
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
