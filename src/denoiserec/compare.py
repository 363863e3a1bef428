"""``denoiserec compare``: models x noise ratios x seeds, resumable, with significance tests.

Every cell (model, noise ratio, seed) is an ordinary run directory under ``OUTPUT/cells``; a
finished cell is never re-run, an interrupted one resumes, and several processes can share the
work (a cell in training is locked by ``OUTPUT/cells/<cell>.lock``). For each cell the test
ranks give per-user metrics, and the trained model's noise scores (its own, or the surprise
baseline) are checked against the injected labels of the training interactions.

Outputs in ``OUTPUT``: ``results.csv`` (one row per cell), ``summary.json`` and ``summary.md``
(mean ± std over seeds; paired permutation tests of per-user NDCG@10 against the first model
at the same noise ratio and against the same model at noise 0; detection quality of the model's
own scores and of the surprise baseline) and ``robustness.png`` (metric vs noise ratio, one
line per model).

An override ``MODEL:key=value`` applies to that model's cells only (e.g. MSDCCL's per-dataset
settings, which keys the backbones lack); the others apply to every cell.
"""

from __future__ import annotations

import csv
import io
import json
import os
import statistics
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from denoiserec.atomic import atomic_write_text
from denoiserec.data import Interactions, load_dataset
from denoiserec.errors import ConfigError
from denoiserec.noise.detection import detection_report
from denoiserec.noise.inject import NoiseConfig
from denoiserec.noise.scores import has_native_scores, score_log
from denoiserec.noise.significance import paired_permutation_test, per_user_metric
from denoiserec.protocols import leave_one_out
from denoiserec.report.plots import robustness_plot
from denoiserec.report.tables import markdown_table
from denoiserec.run import restore, train_config
from denoiserec.runconfig import RunConfig, load_config

REPORTED = ("ndcg@10", "hit@10", "mrr@10")


@dataclass(frozen=True)
class Cell:
    model: str
    ratio: float
    seed: int

    @property
    def name(self) -> str:
        return f"{self.model}-noise{self.ratio:g}-seed{self.seed}"


def scope_of(override: str) -> str | None:
    """The model an override ``MODEL:key=value`` is scoped to, None for a shared one."""
    key = override.split("=", 1)[0]
    return key.split(":", 1)[0] if ":" in key else None


def overrides_for(overrides: list[str], model: str | None) -> list[str]:
    """The shared overrides plus, unscoped, those scoped to ``model``."""
    return [o.split(":", 1)[1] if scope_of(o) else o
            for o in overrides if scope_of(o) in (None, model)]


def cell_config(base: list[str], cell: Cell, kind: str) -> RunConfig:
    overrides = [*overrides_for(base, cell.model), f"model={cell.model}", f"seed={cell.seed}"]
    config = load_config(overrides=overrides)
    noise = NoiseConfig(kind=kind, ratio=cell.ratio, seed=cell.seed) if cell.ratio > 0 else None
    return replace(config, noise=noise)


def detection_of(run_dir: Path, config: RunConfig, clean: Interactions) -> dict[str, Any]:
    """Noise scores of the cell's best model on its noisy training interactions vs labels."""
    path = run_dir / "detection.json"
    if path.is_file():
        return json.loads(path.read_text())
    if config.noise is None:
        return {}
    trainer = restore(run_dir, config, clean)
    noisy = trainer.split.log
    _, train_end, _, _ = leave_one_out(noisy)
    in_train = np.arange(noisy.n_interactions) < train_end[noisy.row_users]
    native = has_native_scores(trainer.model)
    report: dict[str, Any] = {"scorer": "native" if native else "surprise"}
    scores = score_log(trainer.model, noisy, config.data.max_len, trainer.device)
    report.update(detection_report(scores[in_train], noisy.is_noise[in_train]))
    if native:
        baseline = score_log(trainer.model, noisy, config.data.max_len, trainer.device,
                             source="surprise")
        report["surprise_roc_auc"] = detection_report(baseline[in_train],
                                                      noisy.is_noise[in_train])["roc_auc"]
    atomic_write_text(path, json.dumps(report, indent=1))
    return report


def per_user_ndcg(run_dir: Path) -> dict[str, float]:
    with open(run_dir / "test_ranks.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    values = per_user_metric(np.array([int(r["rank"]) for r in rows]), k=10, metric="ndcg")
    return {r["user"]: float(v) for r, v in zip(rows, values, strict=True)}


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextmanager
def claimed(run_dir: Path) -> Iterator[bool]:
    """Hold ``<cell>.lock`` (our pid) while a cell trains; False if a live process holds it.

    A lock left by a process that is gone is taken over, so a crashed worker blocks nothing.
    """
    lock = run_dir.with_name(run_dir.name + ".lock")
    lock.parent.mkdir(parents=True, exist_ok=True)
    try:
        descriptor = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        holder = lock.read_text().strip()
        if holder.isdigit() and _pid_alive(int(holder)):
            yield False
            return
        lock.unlink(missing_ok=True)
        with claimed(run_dir) as mine:
            yield mine
        return
    os.write(descriptor, str(os.getpid()).encode())
    os.close(descriptor)
    try:
        yield True
    finally:
        lock.unlink(missing_ok=True)


def _finished(run_dir: Path) -> bool:
    path = run_dir / "metrics.json"
    return path.is_file() and json.loads(path.read_text())["finished"]


def compare(models: list[str], dataset: str, protocol: str, ratios: list[float], kind: str,
            seeds: int, overrides: list[str], output: Path, poll_seconds: float = 30.0,
            train: bool = True) -> list[dict[str, Any]]:
    """Train every cell (skipping finished ones) and write the comparison (module docstring).

    Several ``compare`` processes may work on the same ``output`` at once: a cell being trained
    is locked, the others skip it and wait for it at the end. ``train=False`` trains nothing
    and summarises the cells finished so far (the seed counts say how many each has).
    """
    unknown = sorted({scope_of(o) for o in overrides} - {None, *models})
    if unknown:
        raise ConfigError(f"--set scoped to {', '.join(unknown)}, not among --models {models}")
    base = [f"dataset={dataset}", f"protocol={protocol}", *overrides]
    shared = load_config(overrides=overrides_for(base, None))
    first_seed = shared.train.seed
    clean = load_dataset(shared.data)
    cells = [Cell(m, r, first_seed + s) for m in models for r in ratios for s in range(seeds)]
    if not train:
        cells = [c for c in cells if _finished(output / "cells" / c.name)]
        if not cells:
            raise ConfigError(f"{output}: no finished cells to summarise")
    pending, announced = (cells if train else []), ""
    while pending:
        busy = []
        for cell in pending:
            run_dir = output / "cells" / cell.name
            with claimed(run_dir) as mine:
                if not mine:
                    busy.append(cell)
                elif not _finished(run_dir):
                    print(f"[compare] training {cell.name}")
                    train_config(cell_config(base, cell, kind), run_dir, clean)
        pending = [c for c in busy if not _finished(output / "cells" / c.name)]
        if pending:
            waiting = ", ".join(c.name for c in pending)
            if waiting != announced:
                print(f"[compare] waiting for {waiting} (trained by another process)")
                announced = waiting
            time.sleep(poll_seconds)
    rows: list[dict[str, Any]] = []
    for cell in cells:
        config = cell_config(base, cell, kind)
        run_dir = output / "cells" / cell.name
        metrics = json.loads((run_dir / "metrics.json").read_text())
        detection = detection_of(run_dir, config, clean)
        rows.append({"model": cell.model, "noise": cell.ratio, "seed": cell.seed,
                     "best_epoch": metrics["best_epoch"], **metrics["test"],
                     **{f"detect_{k}": v for k, v in detection.items()},
                     "run_dir": str(run_dir)})
    write_outputs(rows, models, ratios, kind, dataset, protocol, output)
    return rows


def paired_user_test(a: dict[str, float], b: dict[str, float]) -> tuple[float, float]:
    """(p value, mean difference a - b) over the users both have."""
    common = sorted(set(a) & set(b))
    test = paired_permutation_test(np.array([a[u] for u in common]),
                                   np.array([b[u] for u in common]))
    return test.p_value, test.mean_difference


def summarize(rows: list[dict[str, Any]], models: list[str], ratios: list[float]) -> list[dict]:
    """Mean ± std over seeds per (model, ratio); per-user NDCG@10 (mean over seeds) tested
    against the first model at the same ratio and against the same model at noise 0."""
    per_user: dict[tuple[str, float], dict[str, float]] = {}
    summary = []
    for ratio in ratios:
        for model in models:
            cells = [r for r in rows if r["model"] == model and r["noise"] == ratio]
            if not cells:  # summarising finished cells only, and none of these
                continue
            users = [per_user_ndcg(Path(c["run_dir"])) for c in cells]
            per_user[model, ratio] = {u: float(np.mean([d[u] for d in users])) for u in users[0]}
            entry: dict[str, Any] = {"model": model, "noise": ratio, "seeds": len(cells)}
            for metric in REPORTED:
                values = [c[metric] for c in cells]
                entry[metric] = statistics.mean(values)
                entry[f"{metric}_std"] = statistics.stdev(values) if len(values) > 1 else 0.0
            for key in ("detect_roc_auc", "detect_surprise_roc_auc"):
                if key in cells[0]:
                    entry[key] = statistics.mean(c[key] for c in cells)
            if "detect_scorer" in cells[0]:
                entry["detect_scorer"] = cells[0]["detect_scorer"]
            if model != models[0] and (models[0], ratio) in per_user:
                entry["p_vs_first"], entry["diff_vs_first"] = paired_user_test(
                    per_user[model, ratio], per_user[models[0], ratio])
            if ratio > 0 and (model, 0.0) in per_user:
                clean = [s for s in summary if s["model"] == model and s["noise"] == 0][0]
                entry["p_vs_clean"], _ = paired_user_test(per_user[model, ratio],
                                                          per_user[model, 0.0])
                entry["relative_change_vs_clean"] = entry["ndcg@10"] / clean["ndcg@10"] - 1
            summary.append(entry)
    return summary


def _detection_cell(entry: dict[str, Any]) -> str:
    if "detect_roc_auc" not in entry:
        return "-"
    text = f"{entry['detect_roc_auc']:.3f} ({entry['detect_scorer']})"
    if "detect_surprise_roc_auc" in entry:
        text += f", {entry['detect_surprise_roc_auc']:.3f} (surprise)"
    return text


def write_outputs(rows: list[dict[str, Any]], models: list[str], ratios: list[float],
                  kind: str, dataset: str, protocol: str, output: Path) -> str:
    buffer = io.StringIO()
    fields = sorted({k for r in rows for k in r}, key=lambda k: (k != "model", k != "noise", k))
    writer = csv.DictWriter(buffer, fieldnames=fields)
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(output / "results.csv", buffer.getvalue())
    summary = summarize(rows, models, ratios)
    atomic_write_text(output / "summary.json", json.dumps(
        {"dataset": dataset, "protocol": protocol, "noise_kind": kind, "summary": summary},
        indent=1))
    table = markdown_table(
        ["model", "noise", "seeds", *(m.upper() for m in REPORTED), "p vs " + models[0],
         "NDCG@10 vs noise 0 (p)", "detection ROC-AUC"],
        [[s["model"], f"{s['noise']:g}", s["seeds"],
          *(f"{s[m]:.4f}" + (f" ± {s[f'{m}_std']:.4f}" if s["seeds"] > 1 else "")
            for m in REPORTED),
          f"{s['p_vs_first']:.3g} ({s['diff_vs_first']:+.4f})" if "p_vs_first" in s else "-",
          f"{s['relative_change_vs_clean']:+.1%} ({s['p_vs_clean']:.3g})"
          if "p_vs_clean" in s else "-",
          _detection_cell(s)]
         for s in summary])
    text = (f"dataset: {dataset}   protocol: {protocol}   noise: {kind} (training data only)   "
            f"p: paired permutation test of per-user NDCG@10 (mean over seeds)\n\n{table}\n")
    atomic_write_text(output / "summary.md", text)
    robustness_plot(output / "robustness.png", summary, models, "ndcg@10",
                    f"{dataset}, {protocol} protocol, {kind} noise")
    print(text)
    return text
