"""The campaign's status, headline table and curves (``campaign.py status`` / ``report``).

Headline: per block (dataset, noise ratio), each row's test NDCG@10 and Hit@10 as mean +- sd
over its finished seeds; each row minus its control and minus SASRec as the mean of the
per-seed differences with a 95 % t interval (paired by seed: same seed, same data order), and
a sign-flip permutation test over users of the seeds' mean per-user NDCG@10; for gated models
the keep rate and weight entropy at the selected epoch; for noisy cells the model's own
detection ROC-AUC beside the surprise baseline of the same run. Curves: valid NDCG@10 per
epoch of every cell, and the gated models' keep rate and weight entropy per epoch.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from denoiserec.atomic import atomic_write_text, lock_holder, pid_alive
from denoiserec.report.stats import mean_interval, seed_differences
from denoiserec.runfolder import RunFolder

CONTROLS = {"msdccl": "msdccl-control", "mgsd-wss": "mgsd-control", "clean-retrain": "sasrec",
            "end4rec": "sasrec~behaviour", "sasrec-random": "sasrec"}
REFERENCE = {"retailrocket": "sasrec~behaviour"}  # the "minus SASRec" row per dataset


@dataclass(frozen=True)
class CellState:
    state: str  # done | running | queued
    epochs: int
    best_epoch: int | str
    test_ndcg: str
    spent_hours: float
    left_hours: float


def _metrics(path: Path) -> dict | None:
    return RunFolder(path).read_metrics()


def epoch_seconds(metrics: dict) -> float:
    """Mean seconds of an epoch, training and validation."""
    epochs = metrics["epochs"]
    return sum(e["train_seconds"] + e["valid_seconds"] for e in epochs) / max(len(epochs), 1)


def cell_state(path: Path, expected_epochs: int, hint_seconds: float | None) -> CellState:
    """Where a cell stands; ``hint_seconds``: an epoch's cost for a cell not yet started."""
    metrics = _metrics(path)
    holder = lock_holder(RunFolder(path).claim)
    running = holder is not None and pid_alive(holder)
    if metrics is None:
        left = expected_epochs * (hint_seconds or 0.0) / 3600
        return CellState("running" if running else "queued", 0, "", "", 0.0, left)
    epochs, per_epoch = len(metrics["epochs"]), epoch_seconds(metrics)
    spent = epochs * per_epoch / 3600
    if metrics.get("finished"):
        return CellState("done", epochs, metrics["best_epoch"],
                         f"{metrics['test']['ndcg@10']:.4f}", spent, 0.0)
    left = max(expected_epochs - epochs, 1) * per_epoch / 3600
    return CellState("running" if running else "queued", epochs, metrics["best_epoch"], "",
                     spent, left)


def _seed_runs(output: Path, cells: list, dataset: str, noise: float, row: str) -> dict:
    """{seed: metrics} of the finished cells of one row in one block."""
    from campaign import run_dir

    runs = {}
    for cell in cells:
        if (cell.dataset, cell.noise, cell.row) == (dataset, noise, row):
            metrics = _metrics(run_dir(output, cell))
            if metrics and metrics.get("finished"):
                runs[cell.seed] = (metrics, run_dir(output, cell))
    return runs


def _difference(runs: dict, other: dict) -> str:
    """'+0.0012 +- 0.0030 (n, p)': per-seed paired mean difference of test NDCG@10 with its
    95 % interval, and the users' sign-flip test of the seeds' mean per-user NDCG@10."""
    from denoiserec.compare import per_user_ndcg
    from denoiserec.noise.significance import paired_permutation_test

    differences = seed_differences({s: m["test"]["ndcg@10"] for s, (m, _) in runs.items()},
                                   {s: m["test"]["ndcg@10"] for s, (m, _) in other.items()})
    if not differences:
        return ""
    seeds = list(differences)
    mean, half = mean_interval(list(differences.values()))
    users = [per_user_ndcg(runs[s][1]) for s in seeds]
    users_other = [per_user_ndcg(other[s][1]) for s in seeds]
    keys = sorted(set.intersection(*(set(u) for u in users + users_other)))
    a = np.mean([[u[k] for k in keys] for u in users], axis=0)
    b = np.mean([[u[k] for k in keys] for u in users_other], axis=0)
    p = paired_permutation_test(a, b).p_value
    spread = f" ± {half:.4f}" if half == half else ""
    shown = "p<0.001" if p < 0.001 else f"p={p:.3f}"
    return f"{mean:+.4f}{spread} ({len(seeds)}, {shown})"


def _liveness(runs: dict) -> str:
    parts = [m["epochs"][m["best_epoch"]]["loss_parts"] for m, _ in runs.values()]
    kept = [p["kept"] for p in parts if "kept" in p]
    entropy = [p["weight_entropy"] for p in parts if "weight_entropy" in p]
    if not kept and not entropy:
        return ""
    return (f"{np.mean(kept):.2f}" if kept else "–") + " / " + (
        f"{np.mean(entropy):.3f}" if entropy else "–")


def _detection(runs: dict) -> str:
    found = [d for _, path in runs.values() if (d := RunFolder(path).read_detection())]
    if not found:
        return ""
    native = [d["roc_auc"] for d in found if d.get("scorer") == "native"]
    surprise = [value for d in found if (value := d["roc_auc"] if d.get("scorer") != "native"
                                         else d.get("surprise_roc_auc")) is not None]
    own = f"{np.mean(native):.3f}" if native else "–"  # a model without its own noise scores
    return own + " / " + (f"{np.mean(surprise):.3f}" if surprise else "–")


def detect(output: Path, cells: list) -> None:
    """Write ``detection.json`` of every finished noisy cell (the model's own scores and the
    surprise baseline of the same run, on the training interactions, against the labels)."""
    from campaign import cell_config, run_dir

    from denoiserec.compare import detection_of
    from denoiserec.data import load_dataset

    for cell in cells:
        path = run_dir(output, cell)
        metrics = _metrics(path)
        if cell.noise and metrics and metrics.get("finished"):
            config = load_run_config_of(path) or cell_config(cell, "cpu", False)
            detection_of(path, config, load_dataset(config.data))


def load_run_config_of(path: Path):
    from denoiserec.fingerprints import load_run_config

    return load_run_config(path) if RunFolder(path).config.is_file() else None


def control_of(row: str) -> str | None:
    """An ablation's control is its full model; a denoiser's its own control row."""
    base, _, variant = row.partition("~")
    if variant and variant != "behaviour":
        return base
    return CONTROLS.get(row)


def headline(output: Path, cells: list) -> str:
    blocks = list(dict.fromkeys((c.dataset, c.noise) for c in cells))
    lines = []
    for dataset, noise in blocks:
        rows = list(dict.fromkeys(c.row for c in cells if (c.dataset, c.noise) == (dataset,
                                                                                  noise)))
        title = f"{dataset}" + (f", {noise:.0%} inserted noise" if noise else "")
        lines += [f"\n**{title}** (test, mean ± sd over finished seeds)\n",
                  "| row | seeds | NDCG@10 | Hit@10 | minus control | minus SASRec | "
                  "kept / entropy | detection AUC own / surprise |",
                  "|---|---|---|---|---|---|---|---|"]
        reference = REFERENCE.get(dataset, "sasrec")
        base_runs = _seed_runs(output, cells, dataset, noise, reference)
        for row in rows:
            runs = _seed_runs(output, cells, dataset, noise, row)
            if not runs:
                lines.append(f"| {row} | 0 | | | | | | |")
                continue
            ndcg = [m["test"]["ndcg@10"] for m, _ in runs.values()]
            hit = [m["test"]["hit@10"] for m, _ in runs.values()]
            sd = (lambda v: f" ± {np.std(v, ddof=1):.4f}" if len(v) > 1 else "")  # noqa: E731
            control = control_of(row)
            control_runs = (_seed_runs(output, cells, dataset, noise, control)
                            if control else {})
            minus_control = f"{_difference(runs, control_runs)} vs {control}" if control \
                and control_runs else ""
            minus_base = _difference(runs, base_runs) if row != reference else ""
            lines.append(f"| {row} | {len(runs)} | {np.mean(ndcg):.4f}{sd(ndcg)} | "
                         f"{np.mean(hit):.4f}{sd(hit)} | {minus_control} | {minus_base} | "
                         f"{_liveness(runs)} | {_detection(runs)} |")
    return "\n".join(lines)


def curves(output: Path, cells: list) -> list[Path]:
    """One PNG per block: valid NDCG@10 per epoch (and keep rate / entropy of gated rows)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from campaign import run_dir

    written = []
    for dataset, noise in dict.fromkeys((c.dataset, c.noise) for c in cells):
        block = [c for c in cells if (c.dataset, c.noise) == (dataset, noise)]
        reports = {c: _metrics(run_dir(output, c)) for c in block}
        reports = {c: m for c, m in reports.items() if m and m["epochs"]}
        if not reports:
            continue
        figure, axes = plt.subplots(1, 3, figsize=(18, 4.5))
        rows = sorted({c.row for c in reports})
        colours = {row: f"C{i % 10}" for i, row in enumerate(rows)}
        for cell, metrics in reports.items():
            epochs = [e["epoch"] for e in metrics["epochs"]]
            style = dict(color=colours[cell.row], alpha=0.8, linewidth=1)
            label = cell.row if cell.seed == min(c.seed for c in reports
                                                 if c.row == cell.row) else None
            axes[0].plot(epochs, [e["valid"]["ndcg@10"] for e in metrics["epochs"]],
                         label=label, **style)
            for axis, part in zip(axes[1:], ("kept", "weight_entropy"), strict=True):
                values = [e["loss_parts"].get(part, np.nan) for e in metrics["epochs"]]
                if not np.all(np.isnan(values)):
                    axis.plot(epochs, values, label=label, **style)
                axis.set_title(f"{part} per epoch (gated models)")
                axis.set_ylim(-0.02, 1.02)
        name = f"{dataset}" + (f"-noise{noise:g}" if noise else "")
        axes[0].set_title(f"{name}: valid NDCG@10 per epoch, one line per seed")
        for axis in axes:
            axis.set_xlabel("epoch (from 0)")
            axis.legend(fontsize=7)
        figure.tight_layout()
        path = output / f"curves-{name}.png"
        figure.savefig(path, dpi=100)
        plt.close(figure)
        written.append(path)
    return written


def report(output: Path, cells: list) -> str:
    """Detection for finished noisy cells, then the headline (headline.md) and the curves."""
    detect(output, cells)
    table = headline(output, cells)
    atomic_write_text(output / "headline.md", table + "\n")
    paths = curves(output, cells)
    return table + "\n\ncurves: " + ", ".join(str(p) for p in paths)


COST_ROW = {"sasrec-random": "sasrec", "clean-retrain": "sasrec"}  # rows timed as another


def projection(cells: list, cost_files: list[Path], epochs: int) -> str:
    """Core-hours of the campaign's cells at ``epochs`` epochs each, before and after, from
    ``epoch_cost.py --output`` files (training epochs; validation adds about 1 %)."""
    costs: dict[tuple[str, str], dict] = {}
    for file in cost_files:
        measured = json.loads(file.read_text())
        for row in measured["rows"]:
            costs[measured["dataset"], row["model"]] = row
    totals = {"before": 0.0, "after": 0.0}
    lines = ["| cells | count | core-h before | core-h after | speed-up |", "|---|---|---|---|---|"]
    blocks: dict[tuple[str, str], int] = {}
    for cell in cells:
        base = cell.row.split("~")[0] if cell.row.split("~")[1:] != ["behaviour"] else cell.row
        blocks[cell.dataset, COST_ROW.get(base, base)] = blocks.get(
            (cell.dataset, COST_ROW.get(base, base)), 0) + 1
    missing = []
    for (dataset, row), count in blocks.items():
        if (dataset, row) not in costs:
            missing.append(f"{dataset}/{row}")
            continue
        hours = {v: count * epochs * costs[dataset, row][v]["epoch_seconds"] / 3600
                 for v in totals}
        for version in totals:
            totals[version] += hours[version]
        lines.append(f"| {dataset} {row} | {count} | {hours['before']:.1f} | "
                     f"{hours['after']:.1f} | {hours['before'] / hours['after']:.2f}x |")
    speed_up = totals["before"] / max(totals["after"], 1e-9)
    lines.append(f"| **all** | {len(cells)} | **{totals['before']:.1f}** | "
                 f"**{totals['after']:.1f}** | {speed_up:.2f}x |")
    if missing:
        lines.append(f"\nnot measured (left out): {', '.join(missing)}")
    return "\n".join(lines)
