"""The results of ``denoiserec compare`` as typed rows, and the files they are written to.

:class:`CellResult`: one trained cell (model, noise ratio, seed); :class:`SummaryRow`: one
(model, noise ratio) over its seeds. Both carry the dataset and the protocol, and are written
as ``results.csv`` (one row per cell), ``summary.json``, ``summary.md`` and ``robustness.png``.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from denoiserec.atomic import atomic_write_text
from denoiserec.report.plots import robustness_plot
from denoiserec.report.tables import markdown_table, ordered_metrics

REPORTED = ("ndcg@10", "hit@10", "mrr@10")
_DETECTION_KEYS = {"precision_at_ratio": "precision@ratio", "recall_at_ratio": "recall@ratio",
                   "f1_at_ratio": "f1@ratio"}


@dataclass(frozen=True)
class Detection:
    """How well a cell's noise scores find the injected noise of its training interactions."""

    scorer: str
    """``native`` (the model's own scores) or ``surprise`` (the baseline)."""
    roc_auc: float
    pr_auc: float
    precision_at_ratio: float
    recall_at_ratio: float
    f1_at_ratio: float
    noise_ratio: float
    n: int
    surprise_roc_auc: float | None = None
    """The surprise baseline's ROC-AUC, beside a native scorer."""

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> Detection:
        """From the keys of ``noise.detection.detection_report`` (+ scorer, surprise)."""
        names = {f.name: _DETECTION_KEYS.get(f.name, f.name) for f in dataclasses.fields(cls)}
        return cls(**{name: values[key] for name, key in names.items() if key in values})

    def to_dict(self) -> dict[str, Any]:
        return {_DETECTION_KEYS.get(k, k): v for k, v in dataclasses.asdict(self).items()
                if v is not None}


@dataclass(frozen=True)
class CellResult:
    """One trained cell of a comparison."""

    model: str
    noise: float
    seed: int
    dataset: str
    protocol: str
    best_epoch: int
    """Counted from 0, as in ``metrics.json``."""
    test: dict[str, float]
    run_dir: Path
    detection: Detection | None = None

    def columns(self) -> dict[str, Any]:
        """The cell's ``results.csv`` row."""
        detection = {} if self.detection is None else self.detection.to_dict()
        return {"model": self.model, "noise": self.noise, "seed": self.seed,
                "dataset": self.dataset, "protocol": self.protocol,
                "best_epoch": self.best_epoch,
                **{name: self.test[name] for name in ordered_metrics(self.test)},
                **{f"detect_{key}": value for key, value in detection.items()},
                "run_dir": str(self.run_dir)}


@dataclass(frozen=True)
class SummaryRow:
    """One (model, noise ratio) over its seeds."""

    model: str
    noise: float
    seeds: int
    dataset: str
    protocol: str
    mean: dict[str, float] = field(default_factory=dict)
    std: dict[str, float] = field(default_factory=dict)
    """Sample standard deviation over seeds (nan with one seed: unknown, not 0; ``null`` in
    summary.json)."""
    detect_scorer: str | None = None
    detect_roc_auc: float | None = None
    detect_surprise_roc_auc: float | None = None
    p_vs_first: float | None = None
    """Paired permutation test of per-user NDCG@10 against the first model, same ratio, over
    the ``seeds_vs_first`` seeds both have (per-user values averaged over them)."""
    diff_vs_first: float | None = None
    seeds_vs_first: int | None = None
    p_vs_clean: float | None = None
    """The same test against the same model at noise 0 (``seeds_vs_clean`` seeds); the
    relative change of mean NDCG@10 over the same seeds."""
    relative_change_vs_clean: float | None = None
    seeds_vs_clean: int | None = None

    def to_dict(self) -> dict[str, Any]:
        """The ``summary.json`` entry: metrics as ``name`` and ``name_std``, unset keys left out."""
        out: dict[str, Any] = {"model": self.model, "noise": self.noise, "seeds": self.seeds,
                               "dataset": self.dataset, "protocol": self.protocol}
        for name, value in self.mean.items():
            std = self.std[name]
            out[name], out[f"{name}_std"] = value, None if math.isnan(std) else std
        for name in _OPTIONAL:
            if getattr(self, name) is not None:
                out[name] = getattr(self, name)
        return out


_OPTIONAL = ("detect_scorer", "detect_roc_auc", "detect_surprise_roc_auc", "p_vs_first",
             "diff_vs_first", "seeds_vs_first", "p_vs_clean", "relative_change_vs_clean",
             "seeds_vs_clean")


def _fewer_seeds(row: SummaryRow, paired: int | None) -> str:
    """', n seeds' when a test used fewer seeds than the row has."""
    return f", {paired} seeds" if paired is not None and paired < row.seeds else ""


def _detection_cell(row: SummaryRow) -> str:
    if row.detect_roc_auc is None:
        return "-"
    text = f"{row.detect_roc_auc:.3f} ({row.detect_scorer})"
    if row.detect_surprise_roc_auc is not None:
        text += f", {row.detect_surprise_roc_auc:.3f} (surprise)"
    return text


def _metric_cell(row: SummaryRow, metric: str) -> str:
    text = f"{row.mean[metric]:.4f}"
    return text + (f" ± {row.std[metric]:.4f}" if row.seeds > 1 else "")


def write_outputs(cells: list[CellResult], summary: list[SummaryRow], models: list[str],
                  kind: str, dataset: str, protocol: str, output: Path) -> str:
    """Write results.csv, summary.json, summary.md and robustness.png; return the Markdown."""
    rows = [cell.columns() for cell in cells]
    fields = list(dict.fromkeys(key for row in rows for key in row))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=fields)
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(output / "results.csv", buffer.getvalue())
    entries = [row.to_dict() for row in summary]
    atomic_write_text(output / "summary.json", json.dumps(
        {"dataset": dataset, "protocol": protocol, "noise_kind": kind, "summary": entries},
        indent=1))
    table = markdown_table(
        ["model", "dataset", "protocol", "noise", "seeds", *(m.upper() for m in REPORTED),
         "p vs " + models[0], "NDCG@10 vs noise 0 (p)", "detection ROC-AUC"],
        [[row.model, row.dataset, row.protocol, f"{row.noise:g}", row.seeds,
          *(_metric_cell(row, m) for m in REPORTED),
          f"{row.p_vs_first:.3g} ({row.diff_vs_first:+.4f}{_fewer_seeds(row, row.seeds_vs_first)})"
          if row.p_vs_first is not None and row.diff_vs_first is not None else "-",
          f"{row.relative_change_vs_clean:+.1%} ({row.p_vs_clean:.3g}"
          f"{_fewer_seeds(row, row.seeds_vs_clean)})"
          if row.relative_change_vs_clean is not None and row.p_vs_clean is not None else "-",
          _detection_cell(row)]
         for row in summary])
    text = (f"dataset: {dataset}   protocol: {protocol}   noise: {kind} (training data only)   "
            f"p: paired permutation test of per-user NDCG@10 (mean over the seeds both sides "
            f"have)\n\n{table}\n")
    atomic_write_text(output / "summary.md", text)
    robustness_plot(output / "robustness.png", entries, models, "ndcg@10",
                    f"{dataset}, {protocol} protocol, {kind} noise")
    return text
