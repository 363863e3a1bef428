"""``denoiserec report``: one offline HTML page from a comparison and a study, checked in a real
headless Chromium (skipped without it): no console error, every image loads, and the tables
hold the folders' numbers, recomputed here from the run folders' own metrics.json."""

from __future__ import annotations

import json
import math
import os
import re
import statistics
from pathlib import Path

import pytest

from denoiserec.cli import main
from denoiserec.compare import compare
from denoiserec.errors import ConfigError
from denoiserec.report.html import write_report
from tests.browser import find_chromium, render
from tests.test_tune import job, write_log

TINY = ["model.hidden_size=16", "model.inner_size=32", "model.n_layers=1", "batch_size=64",
        "train.progress=false", "max_len=10", "train.patience=100", "epochs=3",
        "msdccl:model.backbone.hidden_size=16", "msdccl:model.backbone.inner_size=32"]
T95_1DF = 12.706  # Student t, 0.975 quantile, 1 degree of freedom (2 seeds)


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    pytest.importorskip("optuna")
    from denoiserec.tuning.study import tune

    folder = tmp_path_factory.mktemp("report")
    log = write_log(folder / "log.csv")
    compared = folder / "compare"
    compare(["sasrec", "msdccl"], str(log), "recbole", [0.0, 0.2], "insert", 2,
            [t for t in TINY if not t.startswith("model.") or "msdccl" in t]
            + ["sasrec:model.hidden_size=16", "sasrec:model.inner_size=32",
               "sasrec:model.n_layers=1", "msdccl:model.n_layers=1",
               "msdccl:model.inner_size=32"],
            compared, poll_seconds=0.1)
    tuned = job(folder, log, output="tune")
    tune(tuned)
    page = folder / "report.html"
    assert main(["report", str(compared), str(tuned.output), "--output", str(page)]) == 0
    return compared, tuned.output, page


def test_the_page_is_self_contained(folders):
    _, _, page = folders
    text = page.read_text()
    assert not re.search(r'(src|href)="(?!data:image/png;base64,|#)', text)
    assert "<script" not in text and "http" not in text


def cells(compared: Path) -> dict[str, list[dict]]:
    groups: dict[str, list[dict]] = {}
    for cell in sorted((compared / "cells").iterdir()):
        if cell.is_dir():
            metrics = json.loads((cell / "metrics.json").read_text())
            groups.setdefault(cell.name.rsplit("-seed", 1)[0], []).append(metrics)
    return groups


def mean_sd(values: list[float]) -> str:
    return f"{statistics.mean(values):.4f} ± {statistics.stdev(values):.4f}"


@pytest.fixture(scope="module")
def rendered(folders):
    if find_chromium() is None:
        pytest.skip("Chromium is not installed (Debian: apt-get install chromium)")
    _, _, page = folders
    result = render(page, screenshot=True)
    target = os.environ.get("DENOISEREC_REPORT_SCREENSHOT")
    if target:  # docs/report.png is made this way
        Path(target).write_bytes(result.screenshot)
    return result


def test_chromium_shows_no_console_error_and_every_image(rendered):
    assert rendered.console_errors == []
    # comparison: learning, robustness, keep rate, entropy; study: history, trial curves
    assert len(rendered.images) == 6
    for image in rendered.images:
        assert image["complete"] and image["width"] > 100, image["alt"]


def test_the_comparison_table_holds_the_cells_numbers(folders, rendered):
    compared, _, _ = folders
    (results,) = [t for t in rendered.tables if t["css"] == "results"]
    header, *rows = results["rows"]
    by_name = {row[0]: dict(zip(header, row, strict=True)) for row in rows}
    groups = cells(compared)
    assert set(by_name) == set(groups)
    for name, runs in groups.items():
        row = by_name[name]
        assert row["seeds"] == str(len(runs))
        assert row["test ndcg@10"] == mean_sd([r["test"]["ndcg@10"] for r in runs])
        assert row["test hit@10"] == mean_sd([r["test"]["hit@10"] for r in runs])
        assert row["valid ndcg@10"] == mean_sd([r["best_valid"]["ndcg@10"] for r in runs])
        assert row["protocol"] == "recbole"
        commit = runs[0]["code"]["commit"]
        assert commit is None or row["commit"].startswith(commit[:10])
    for ratio in ("0", "0.2"):  # MSDCCL against SASRec at the same ratio, paired by seed
        diffs = [m["test"]["ndcg@10"] - s["test"]["ndcg@10"] for m, s in zip(
            groups[f"msdccl-noise{ratio}"], groups[f"sasrec-noise{ratio}"], strict=True)]
        mean = statistics.mean(diffs)
        half = T95_1DF * statistics.stdev(diffs) / math.sqrt(2)
        cell = by_name[f"msdccl-noise{ratio}"]["Δ test ndcg@10 vs reference [95 % paired t]"]
        assert cell.startswith(f"{mean:+.4f} [{mean - half:+.4f}, {mean + half:+.4f}] vs "
                               f"sasrec-noise{ratio}")


def test_the_study_tables_hold_the_trials_numbers(folders, rendered):
    _, tuned, _ = folders
    best = json.loads((tuned / "best.json").read_text())
    (table,) = [t for t in rendered.tables if t["css"] == "best"]
    header, row = table["rows"]
    shown = dict(zip(header, row, strict=True))
    assert shown["best trial"] == str(best["trial"])
    assert shown["test ndcg@10 (once)"] == f"{best['test']['ndcg@10']:.4f}"
    assert shown["valid ndcg@10"] == f"{best['valid']['ndcg@10']:.4f}"
    (trials,) = [t for t in rendered.tables if t["css"] == "trials"]
    header, *rows = trials["rows"]
    for row in rows:
        shown = dict(zip(header, row, strict=True))
        run = tuned / "trials" / f"{int(shown['trial']):04d}"
        metrics = json.loads((run / "metrics.json").read_text())
        selected = metrics["epochs"][metrics["best_epoch"]]["selection_value"]
        assert shown["value"] == f"{selected:.4f}"
        assert shown["epochs"] == str(len(metrics["epochs"]))


def test_a_folder_that_is_no_result_is_refused_in_one_line(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="neither a comparison"):
        write_report([tmp_path / "empty"], tmp_path / "r.html")
    assert main(["report", str(tmp_path / "nothing"), "--output", str(tmp_path / "r.html")]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1
    assert not (tmp_path / "r.html").exists()
