"""A study's files: ``trials.csv``, ``best.json``, ``summary.md`` and ``history.png``."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

from denoiserec.atomic import atomic_write_text
from denoiserec.report.plots import tuning_history
from denoiserec.report.tables import markdown_table, metrics_table


def trial_rows(study: Any) -> list[dict[str, Any]]:
    """One mapping per trial, in trial order (settings under their dotted keys)."""
    rows = []
    for trial in study.get_trials(deepcopy=False):
        rows.append({"number": trial.number, "state": trial.state.name,
                     "value": trial.value,
                     "epochs": trial.user_attrs.get("epochs", len(trial.intermediate_values)),
                     "best_epoch": trial.user_attrs.get("best_epoch"),
                     "run_dir": trial.user_attrs.get("run_dir"),
                     "retry_of": trial.system_attrs.get("failed_trial"),
                     **trial.params})
    return rows


def _csv(rows: list[dict[str, Any]]) -> str:
    keys = list(dict.fromkeys(k for row in rows for k in row))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=keys)
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def write_outputs(study: Any, output: Path, tested: dict[str, float] | None
                  ) -> dict[str, Any] | None:
    """Write the study's files; ``best.json`` once the best trial is ``tested``. Returns the
    best trial's record (None before any trial completed)."""
    rows = trial_rows(study)
    if not rows:
        return None
    atomic_write_text(output / "trials.csv", _csv(rows))
    complete = [r for r in rows if r["state"] == "COMPLETE"]
    counts = {state: sum(r["state"] == state for r in rows)
              for state in ("COMPLETE", "PRUNED", "FAIL", "RUNNING", "WAITING")}
    lines = [f"# Study {output.name}", "",
             "trials: " + ", ".join(f"{n} {s.lower()}" for s, n in counts.items() if n), ""]
    best = None
    if complete:
        trial = study.best_trial
        saved = output / "best.json"
        if tested is None and saved.is_file():  # a late writer keeps the test of the best
            record = json.loads(saved.read_text())
            tested = record["test"] if record["trial"] == trial.number else None
        metrics = json.loads((output / trial.user_attrs["run_dir"] / "metrics.json").read_text())
        best = {"trial": trial.number, "value": trial.value, "params": trial.params,
                "run_dir": trial.user_attrs["run_dir"], "best_epoch": metrics["best_epoch"],
                "valid_metric": metrics["valid_metric"], "protocol": metrics["protocol"],
                "dataset": metrics["dataset"], "valid": metrics["best_valid"],
                "test": tested, "code": metrics.get("code")}
        if tested is not None:
            atomic_write_text(output / "best.json", json.dumps(best, indent=1))
        lines += [f"best trial: {trial.number} (value {trial.value:.4f}, valid "
                  f"{metrics['valid_metric']} selection value at epoch {metrics['best_epoch']})",
                  "", "settings: " + ", ".join(f"{k}={v}" for k, v in trial.params.items()),
                  "", f"dataset: {metrics['dataset']}   protocol: {metrics['protocol']}", "",
                  metrics_table({"valid (best)": metrics["best_valid"],
                                 **({"test (once)": tested} if tested else {})}), ""]
        top = sorted(complete, key=lambda r: -r["value"])[:10]
        keys = list(trial.params)
        lines += ["ten best trials:", "",
                  markdown_table(["trial", "value", "epochs", *keys],
                                 [[r["number"], r["value"], r["epochs"],
                                   *(r.get(k) for k in keys)] for r in top])]
    atomic_write_text(output / "summary.md", "\n".join(lines) + "\n")
    tuning_history(output / "history.png", rows, f"study {output.name}")
    return best
