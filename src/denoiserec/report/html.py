"""``denoiserec report DIR...``: one static HTML page from compare / campaign / tune folders.

The page needs nothing but itself: styles inline, no script, every figure a PNG embedded as a
data URI, so it opens offline and can be mailed. Per folder of cells: a table with mean ± sd
over seeds (valid at the selected epoch, test) and the test NDCG@10 difference against the
folder's reference row (the first row with the same dataset, protocol and noise ratio) with a
95 % paired t interval over the common seeds; learning curves (valid metric per epoch, mean
over seeds, seeds faint); robustness curves (test NDCG@10 against the noise ratio) when the
folder holds several ratios; the keep rate and the weight entropy per epoch of denoisers. Per
study: the best trial (valid, and test measured once), every trial, the optimisation history
and the trials' learning curves. Every row names its protocol and the commit that produced it;
the protocols' full settings close the page.
"""

from __future__ import annotations

import base64
import csv
import html
import json
import statistics
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from denoiserec.atomic import atomic_write_text
from denoiserec.errors import ConfigError
from denoiserec.provenance import code_version
from denoiserec.report.folders import Folder, Group, Run, paired_interval, read_folder
from denoiserec.report.plots import lines_figure, png_bytes

TEST_METRICS = ("ndcg@10", "hit@10", "mrr@10")
STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }
table { border-collapse: collapse; margin: 1em 0; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: right; }
th { background: #f3f3f3; } td.name, th.name { text-align: left; }
img { max-width: 100%; display: block; margin: 0.5em 0; }
code, pre { background: #f6f6f6; } pre { padding: 0.6em; overflow-x: auto; font-size: 0.85em; }
.note { color: #555; font-size: 0.9em; }
"""


def esc(value: Any) -> str:
    return html.escape(str(value))


def fmt(value: float | None) -> str:
    return "–" if value is None or value != value else f"{value:.4f}"


def mean_sd_text(group: Group, split: str, metric: str) -> str:
    mean, sd = group.mean_sd(split, metric)
    if mean != mean:
        return "–"
    return f"{mean:.4f}" if sd != sd else f"{mean:.4f} ± {sd:.4f}"  # no sd of one seed


def table(header: list[str], rows: list[list[str]], css: str) -> str:
    """An HTML table; cells are already escaped; the first column is a name."""
    head = "".join(f'<th class="{"name" if i == 0 else ""}">{h}</th>'
                   for i, h in enumerate(header))
    body = "".join("<tr>" + "".join(f'<td class="{"name" if i == 0 else ""}">{c}</td>'
                                    for i, c in enumerate(row)) + "</tr>" for row in rows)
    return f'<table class="{css}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def image(fig: Any, alt: str) -> str:
    data = base64.b64encode(png_bytes(fig)).decode("ascii")
    return f'<img alt="{esc(alt)}" src="data:image/png;base64,{data}">'


def _ordered(folder: Folder) -> list[Group]:
    """Groups in the order of the folder's ``results.csv`` (compare: first = reference); in a
    folder without one (converged, campaign), SASRec's plainest group first (the shortest name:
    ``sasrec``, not ``sasrec-random``), the reference of the campaign's headline, then by name."""
    path = folder.path / "results.csv"
    order: list[str] = []
    if path.is_file():
        with open(path, newline="") as handle:
            for row in csv.DictReader(handle):
                name = Path(row.get("run_dir", "")).name
                group = name.rsplit("-seed", 1)[0]
                if group and group not in order:
                    order.append(group)
    rank = {name: i for i, name in enumerate(order)}
    def key(group: Group) -> tuple:
        sasrec = group.first.model == "sasrec"
        return rank.get(group.name, len(rank)), not sasrec, len(group.name) * sasrec, group.name

    return sorted(folder.groups, key=key)


def _reference(group: Group, groups: list[Group]) -> Group:
    key = (group.first.dataset, group.first.protocol, group.first.noise)
    return next(g for g in groups
                if (g.first.dataset, g.first.protocol, g.first.noise) == key)


def _commits(runs: list[Run]) -> str:
    return ", ".join(sorted({r.commit for r in runs}))


def cells_section(folder: Folder) -> str:
    groups = _ordered(folder)
    metric = groups[0].first.valid_metric
    header = ["setting", "model", "dataset", "protocol", "noise", "seeds",
              f"valid {metric}", *(f"test {m}" for m in TEST_METRICS),
              "Δ test ndcg@10 vs reference [95 % paired t]", "commit"]
    rows = []
    for group in groups:
        reference = _reference(group, groups)
        if reference is group:
            delta = f"reference ({esc(group.name)})"
        else:
            interval = paired_interval(group, reference, "test", "ndcg@10")
            delta = ("no common seed" if interval is None else
                     f"{interval.difference:+.4f} (1 seed)" if interval.low is None else
                     f"{interval.difference:+.4f} [{interval.low:+.4f}, {interval.high:+.4f}]"
                     f" vs {esc(reference.name)}, {interval.seeds} seeds")
        first = group.first
        rows.append([esc(group.name), esc(first.model), esc(first.dataset), esc(first.protocol),
                     f"{first.noise:g}", str(len(group.runs)),
                     mean_sd_text(group, "valid", metric),
                     *(mean_sd_text(group, "test", m) for m in TEST_METRICS),
                     delta, esc(_commits(group.runs))])
    parts = [table(header, rows, "results"), _curves(groups, metric)]
    ratios = sorted({g.first.noise for g in groups})
    if len(ratios) > 1:
        parts.append(_robustness(groups))
    for part, label in (("kept", "keep rate (share of items kept)"),
                        ("weight_entropy", "normalised weight entropy")):
        parts.append(_loss_part(groups, part, label))
    return "\n".join(p for p in parts if p)


def _mean_curve(runs: list[Run], value: Any) -> list[tuple[float, float]]:
    """Per epoch, the mean over the runs that reached it of ``value(entry)``."""
    by_epoch: dict[int, list[float]] = {}
    for run in runs:
        for entry in run.history:
            v = value(entry)
            if v is not None:
                by_epoch.setdefault(entry["epoch"], []).append(v)
    return [(e, statistics.mean(v)) for e, v in sorted(by_epoch.items())]


def _curves(groups: list[Group], metric: str) -> str:
    series = {g.name: _mean_curve(g.runs, lambda e: e["valid"].get(metric)) for g in groups}
    faint = {f"{r.path}": _mean_curve([r], lambda e: e["valid"].get(metric))
             for g in groups for r in g.runs}
    fig = lines_figure(series, "epoch (from 0)", f"valid {metric}",
                       "learning curves (mean over seeds; seeds grey)", faint)
    return "<h3>Learning curves</h3>" + image(fig, f"valid {metric} per epoch")


def _robustness(groups: list[Group]) -> str:
    series: dict[str, list[tuple[float, float]]] = {}
    for group in groups:
        mean, _ = group.mean_sd("test", "ndcg@10")
        series.setdefault(f"{group.first.model} ({group.first.dataset})", []).append(
            (group.first.noise, mean))
    series = {k: sorted(v) for k, v in series.items()}
    fig = lines_figure(series, "noise ratio", "test ndcg@10 (mean over seeds)", "robustness")
    return "<h3>Robustness</h3>" + image(fig, "test ndcg@10 against the noise ratio")


def _loss_part(groups: list[Group], part: str, label: str) -> str:
    series = {g.name: _mean_curve(g.runs, lambda e: e["loss_parts"].get(part))
              for g in groups}
    series = {k: v for k, v in series.items() if v}
    if not series:
        return ""
    fig = lines_figure(series, "epoch (from 0)", label, f"{label} per epoch (mean over seeds)")
    return f"<h3>{esc(label.capitalize())}</h3>" + image(fig, f"{label} per epoch")


def tune_section(folder: Folder) -> str:
    parts = []
    best = folder.best
    runs = [t.run for t in folder.trials if t.run is not None]
    metric = runs[0].valid_metric if runs else "ndcg@10"
    if best is not None:
        settings = ", ".join(f"{esc(k)}={esc(v)}" for k, v in best["params"].items())
        code = best.get("code") or {}
        commit = (code.get("commit") or "unknown")[:10] + ("+dirty" if code.get("dirty") else "")
        parts.append(table(
            ["best trial", "settings", f"valid {metric}", "test ndcg@10 (once)",
             "test hit@10", "protocol", "commit"],
            [[str(best["trial"]), settings, fmt(best["valid"].get(metric)),
              fmt((best.get("test") or {}).get("ndcg@10")),
              fmt((best.get("test") or {}).get("hit@10")), esc(best["protocol"]),
              esc(commit)]], "best"))
    else:
        parts.append('<p class="note">No best trial tested yet (the study is still running '
                     'or no trial completed).</p>')
    keys = list(folder.trials[0].params) if folder.trials else []
    rows = [[str(t.number), esc(t.state.lower()), fmt(t.value),
             str(len(t.run.history)) if t.run else "–",
             *(esc(t.params.get(k, "")) for k in keys),
             esc(t.run.protocol) if t.run else "–", esc(t.run.commit) if t.run else "–"]
            for t in folder.trials]
    parts.append(table(["trial", "state", "value", "epochs", *map(esc, keys), "protocol",
                        "commit"], rows, "trials"))
    done = sorted((t.number, t.value) for t in folder.trials if t.value is not None)
    best_so_far, running = [], float("-inf")
    for number, value in done:
        running = max(running, value)
        best_so_far.append((number, running))
    fig = lines_figure({"best so far": best_so_far}, "trial", "valid selection value",
                       "optimisation history (every completed trial grey)",
                       {"trials": done})
    parts.append("<h3>Optimisation history</h3>" + image(fig, "optimisation history"))
    faint = {f"trial {t.number}": [(e["epoch"], e["selection_value"]) for e in t.run.history]
             for t in folder.trials if t.run is not None}
    best_curve = {}
    if best is not None and f"trial {best['trial']}" in faint:
        best_curve = {f"best (trial {best['trial']})": faint.pop(f"trial {best['trial']}")}
    fig = lines_figure(best_curve, "epoch (from 0)", "valid selection value",
                       "trials' learning curves (pruned ones stop early)", faint)
    parts.append("<h3>Trials' learning curves</h3>" + image(fig, "trials' learning curves"))
    return "\n".join(parts)


def _protocols(folders: list[Folder]) -> str:
    seen: dict[str, list[str]] = {}
    for folder in folders:
        runs = ([r for g in folder.groups for r in g.runs]
                + [t.run for t in folder.trials if t.run is not None])
        for run in runs:
            text = json.dumps({"protocol": run.protocol, **run.protocol_config}, indent=1)
            where = f"{folder.path}"
            if where not in seen.setdefault(text, []):
                seen[text].append(where)
    return "".join(f"<p>{esc(', '.join(where))}:</p><pre>{esc(text)}</pre>"
                   for text, where in seen.items())


def render(folders: list[Folder]) -> str:
    sections, toc = [], []
    for i, folder in enumerate(folders):
        kind = "study (denoiserec tune)" if folder.kind == "tune" else "comparison (cells)"
        body = tune_section(folder) if folder.kind == "tune" else cells_section(folder)
        toc.append(f'<li><a href="#folder{i}">{esc(folder.path)}</a> — {kind}</li>')
        sections.append(f'<section id="folder{i}"><h2>{esc(folder.path)}</h2>'
                        f'<p class="note">{kind}</p>{body}</section>')
    code = code_version()
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f"<title>denoiserec report</title><style>{STYLE}</style></head><body>"
            f"<h1>denoiserec report</h1><p class=\"note\">written {stamp} by denoiserec "
            f"{esc(code['version'])}; mean ± sd over seeds; valid at the selected epoch; each "
            "row names the protocol and the commit of the code that produced it.</p>"
            f"<ul>{''.join(toc)}<li><a href=\"#protocols\">protocols</a></li></ul>"
            f"{''.join(sections)}<section id=\"protocols\"><h2>Protocols</h2>"
            f"{_protocols(folders)}</section></body></html>\n")


def write_report(paths: list[Path], output: Path) -> Path:
    """Read every folder (one-line error on a bad one) and write the page to ``output``."""
    if output.is_dir():
        raise ConfigError(f"{output} is a folder; give the HTML file to write")
    folders = [read_folder(Path(p)) for p in paths]
    atomic_write_text(output, render(folders))
    return output
