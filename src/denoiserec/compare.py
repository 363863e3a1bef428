"""``denoiserec compare``: models x noise ratios x seeds, resumable, with significance tests.

Every cell (model, noise ratio, seed) is an ordinary run directory under ``OUTPUT/cells``; a
finished cell is reused only when its fingerprint (prepared data + configuration, see
:mod:`denoiserec.run`) matches the cell asked for, else the command refuses, naming the
difference (``--recompute`` retrains such cells). An interrupted cell resumes (so does a cell
asked for more epochs), and several processes can share the work (a cell in training is
locked by ``OUTPUT/cells/<cell>.lock``). Every model and setting is checked before any cell
trains. For each cell the test ranks give per-user metrics, and the trained model's noise
scores (its own, or the surprise baseline) are checked against the injected labels of the
training interactions.

Outputs in ``OUTPUT`` (:mod:`denoiserec.report.comparison`): ``results.csv`` (one row per
cell), ``summary.json`` and ``summary.md`` (mean ± std over seeds; paired permutation tests of
per-user NDCG@10 against the first model at the same noise ratio and against the same model at
noise 0; detection quality of the model's own scores and of the surprise baseline) and
``robustness.png`` (metric vs noise ratio, one line per model).

A cell's settings are the loaded configuration (``--set``) with the grid's model, noise kind,
ratio and seed; the grid's own keys are refused in ``--set``. An override ``MODEL:key=value``
applies to that model's cells only (e.g. MSDCCL's per-dataset settings, which keys the
backbones lack); the others apply to every cell.
"""

from __future__ import annotations

import shutil
import statistics
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from denoiserec.atomic import pid_lock
from denoiserec.config import check_range, parse_override
from denoiserec.data import Interactions
from denoiserec.errors import ConfigError
from denoiserec.fingerprints import fingerprint, load_run_config, mismatch
from denoiserec.noise.detection import detection_report
from denoiserec.noise.inject import NoiseConfig
from denoiserec.noise.scores import has_native_scores, score_log
from denoiserec.noise.significance import paired_permutation_test, per_user_metric
from denoiserec.report.comparison import REPORTED, CellResult, Detection, SummaryRow, write_outputs
from denoiserec.report.stats import sample_sd
from denoiserec.run import load_log, make_trainer, prepare, restore, train_config
from denoiserec.runconfig import SHORT_KEYS, RunConfig, check_settings_apply, load_config
from denoiserec.runfolder import RunFolder, check_output

# settings the grid sets for each cell, and the option that sets them
GRID_KEYS = {"model.name": "--models", "data.dataset": "--dataset", "protocol.name": "--protocol",
             "noise.kind": "--noise-kind", "noise.ratio": "--noise",
             "noise.seed": "--seeds (a cell's noise seed is its training seed)"}


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
    """The loaded settings (noise ones included) with the cell's model, seed, noise kind and
    ratio; no noise at ratio 0."""
    config = load_config(overrides=[*overrides_for(base, cell.model), f"model={cell.model}",
                                    f"seed={cell.seed}"])
    if cell.ratio == 0:
        return replace(config, noise=None)
    noise = replace(config.noise or NoiseConfig(), kind=kind, ratio=cell.ratio, seed=cell.seed)
    return replace(config, noise=noise)


def check_grid(models: list[str], ratios: list[float], kind: str, seeds: int,
               overrides: list[str]) -> None:
    """The grid and the overrides, before anything is read: one-line errors."""
    for name, values in (("--models", models), ("--noise", ratios)):
        if not values:
            raise ConfigError(f"{name} lists nothing")
        repeated = sorted({str(v) for v in values if values.count(v) > 1})
        if repeated:
            raise ConfigError(f"{name} lists {', '.join(repeated)} more than once")
    for ratio in ratios:
        try:
            NoiseConfig(kind=kind, ratio=ratio)
        except ConfigError as err:
            raise ConfigError(f"--noise {ratio:g}: {err}") from None
    check_range("--seeds", seeds, 1)
    unknown = sorted({scope_of(o) for o in overrides} - {None, *models})
    if unknown:
        raise ConfigError(f"--set scoped to {', '.join(unknown)}, not among --models {models}")
    for override in overrides:
        keys, value = parse_override(override.split(":", 1)[1] if scope_of(override)
                                     else override, SHORT_KEYS)
        paths = [".".join(keys)] + (["model.name"] if keys == ["model"] else [])
        if isinstance(value, dict):
            paths += [f"{'.'.join(keys)}.{key}" for key in value]
        owned = [path for path in paths if path in GRID_KEYS]
        if owned:
            raise ConfigError(f"--set {override}: compare sets {owned[0]} for each cell; use "
                              f"{GRID_KEYS[owned[0]]}")


def detection_of(run_dir: Path, config: RunConfig, clean: Interactions) -> Detection | None:
    """Noise scores of the cell's best model on its noisy training interactions vs labels."""
    folder = RunFolder(run_dir)
    recorded = folder.read_detection()
    if recorded is not None:
        return Detection.from_dict(recorded)
    if config.noise is None:
        return None
    trainer = restore(run_dir, config, clean)
    noisy, train_end = trainer.split.log, trainer.split.train_end  # the protocol's own split
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
    folder.write_detection(report)
    return Detection.from_dict(report)


def per_user_ndcg(run_dir: Path) -> dict[str, float]:
    """NDCG@10 of each test user of the run (``test_ranks.csv``)."""
    users, ranks = RunFolder(run_dir).read_test_ranks()
    values = per_user_metric(np.array(ranks), k=10, metric="ndcg")
    return {user: float(v) for user, v in zip(users, values, strict=True)}


@contextmanager
def claimed(run_dir: Path) -> Iterator[bool]:
    """Hold ``<cell>.lock`` (our pid) while a cell trains; False if a live process holds it.

    A lock left by a process that is gone is taken over, so a crashed worker blocks nothing.
    """
    with pid_lock(RunFolder(run_dir).claim) as mine:
        yield mine


def _finished(run_dir: Path, config: RunConfig) -> bool:
    """Finished, and for as many epochs as ``config`` asks (else it resumes)."""
    return (RunFolder(run_dir).finished()
            and load_run_config(run_dir).train.epochs == config.train.epochs)


def _stale_cells(cells: dict[Cell, RunConfig], clean: Interactions, output: Path,
                 recompute: bool) -> list[Path]:
    """Cells trained on other inputs than asked: refused, or listed to retrain with
    ``recompute``."""
    stale = []
    for cell, config in cells.items():
        run_dir = output / "cells" / cell.name
        if not RunFolder(run_dir).has_trained():
            continue
        problem = mismatch(run_dir, fingerprint(config, prepare(config, clean)))
        done = RunFolder(run_dir).trained_epochs()
        if problem is None and done > config.train.epochs:
            problem = f"has trained {done} epochs, more than train.epochs={config.train.epochs}"
        if problem and not recompute:
            raise ConfigError(f"cell {cell.name} in {output} {problem}; use another --output "
                              "or --recompute")
        if problem:
            stale.append(run_dir)
    return stale


def _cell_result(cell: Cell, config: RunConfig, output: Path,
                 clean: Interactions) -> CellResult:
    run_dir = output / "cells" / cell.name
    metrics = RunFolder(run_dir).read_metrics()
    assert metrics is not None, run_dir  # a finished cell
    return CellResult(model=cell.model, noise=cell.ratio, seed=cell.seed,
                      dataset=config.data.dataset, protocol=config.protocol.name,
                      best_epoch=metrics["best_epoch"], test=metrics["test"], run_dir=run_dir,
                      detection=detection_of(run_dir, config, clean))


def compare(models: list[str], dataset: str, protocol: str, ratios: list[float], kind: str,
            seeds: int, overrides: list[str], output: Path, poll_seconds: float = 30.0,
            train: bool = True, recompute: bool = False) -> list[CellResult]:
    """Train every cell (reusing finished ones) and write the comparison (module docstring).

    Several ``compare`` processes may work on the same ``output`` at once: a cell being trained
    is locked, the others skip it and wait for it at the end. ``train=False`` trains nothing
    and summarises the cells finished so far (the seed counts say how many each has).
    """
    check_grid(models, ratios, kind, seeds, overrides)
    check_output(output, (output / "cells").is_dir(), "a denoiserec comparison")
    base = [f"dataset={dataset}", f"protocol={protocol}", *overrides]
    first_seed = load_config(overrides=[*overrides_for(base, models[0]),  # its model.* keys
                                        f"model={models[0]}"]).train.seed
    configs = {cell: cell_config(base, cell, kind) for cell in
               [Cell(m, r, first_seed + s) for m in models for r in ratios for s in range(seeds)]}
    for config in configs.values():  # nothing set that would do nothing in a cell
        check_settings_apply(config)
    clean = load_log(next(iter(configs.values())))  # with a shipped test file, if any
    for model in models:  # every model builds, before any cell trains
        config = replace(next(c for cell, c in configs.items() if cell.model == model),
                         noise=None)
        make_trainer(config, prepare(config, clean), output / "cells" / model)
    for run_dir in _stale_cells(configs, clean, output, recompute):
        with claimed(run_dir) as mine:
            if not mine:
                raise ConfigError(f"{run_dir} is being trained by another process; retry "
                                  "--recompute when it is done")
            print(f"[compare] recomputing {run_dir.name} (trained on other inputs)")
            shutil.rmtree(run_dir)
    cells = list(configs)
    if not train:
        cells = [c for c in cells if _finished(output / "cells" / c.name, configs[c])]
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
                elif not _finished(run_dir, configs[cell]):
                    print(f"[compare] training {cell.name}")
                    RunFolder(run_dir).detection.unlink(missing_ok=True)
                    train_config(configs[cell], run_dir, clean)
        pending = [c for c in busy if not _finished(output / "cells" / c.name, configs[c])]
        if pending:
            waiting = ", ".join(c.name for c in pending)
            if waiting != announced:
                print(f"[compare] waiting for {waiting} (trained by another process)")
                announced = waiting
            time.sleep(poll_seconds)
    results = [_cell_result(cell, configs[cell], output, clean) for cell in cells]
    print(write_outputs(results, summarize(results, models, ratios), models, kind, dataset,
                        protocol, output))
    return results


def paired_user_test(a: dict[str, float], b: dict[str, float]) -> tuple[float, float]:
    """(p value, mean difference a - b) over the users both have, paired by user id."""
    common = sorted(set(a) & set(b))
    test = paired_permutation_test(np.array([a[u] for u in common]),
                                   np.array([b[u] for u in common]))
    return test.p_value, test.mean_difference


def _seed_mean(per_seed: dict[int, dict[str, float]], seeds: list[int]) -> dict[str, float]:
    """Per-user NDCG@10 averaged over ``seeds``, for the users every one of them ranked."""
    users = set.intersection(*(set(per_seed[s]) for s in seeds))
    return {u: float(np.mean([per_seed[s][u] for s in seeds])) for u in users}


def _paired_over_seeds(a: dict[int, dict[str, float]], b: dict[int, dict[str, float]]
                       ) -> tuple[float, float, list[int]] | None:
    """(p value, mean difference a - b, the seeds) of the per-user test over the seeds both
    have (None when they share none): sides never mix different seeds."""
    seeds = sorted(set(a) & set(b))
    if not seeds:
        return None
    return (*paired_user_test(_seed_mean(a, seeds), _seed_mean(b, seeds)), seeds)


def summarize(cells: list[CellResult], models: list[str], ratios: list[float]
              ) -> list[SummaryRow]:
    """Mean ± std over seeds per (model, ratio); per-user NDCG@10 (mean over the seeds both
    sides have) tested against the first model at the same ratio and against the same model at
    noise 0, the relative change over those seeds too."""
    per_user: dict[tuple[str, float], dict[int, dict[str, float]]] = {}
    ndcg: dict[tuple[str, float], dict[int, float]] = {}
    summary: list[SummaryRow] = []
    for ratio in ratios:
        for model in models:
            group = [c for c in cells if c.model == model and c.noise == ratio]
            if not group:  # summarising finished cells only, and none of these
                continue
            per_user[model, ratio] = {c.seed: per_user_ndcg(c.run_dir) for c in group}
            ndcg[model, ratio] = {c.seed: c.test["ndcg@10"] for c in group}
            values = {m: [c.test[m] for c in group] for m in REPORTED}
            detections = [c.detection for c in group if c.detection is not None]
            row = SummaryRow(
                model=model, noise=ratio, seeds=len(group), dataset=group[0].dataset,
                protocol=group[0].protocol,
                mean={m: statistics.mean(v) for m, v in values.items()},
                std={m: sample_sd(v) for m, v in values.items()})
            if detections:
                surprise = [d.surprise_roc_auc for d in detections
                            if d.surprise_roc_auc is not None]
                row = replace(row, detect_scorer=detections[0].scorer,
                              detect_roc_auc=statistics.mean(d.roc_auc for d in detections),
                              detect_surprise_roc_auc=statistics.mean(surprise)
                              if surprise else None)
            first = per_user.get((models[0], ratio))
            if model != models[0] and first and (tested := _paired_over_seeds(
                    per_user[model, ratio], first)):
                p_value, difference, seeds = tested
                row = replace(row, p_vs_first=p_value, diff_vs_first=difference,
                              seeds_vs_first=len(seeds))
            clean = per_user.get((model, 0.0))
            if ratio > 0 and clean and (tested := _paired_over_seeds(
                    per_user[model, ratio], clean)):
                p_value, _, seeds = tested
                noisy_mean = statistics.mean(ndcg[model, ratio][s] for s in seeds)
                clean_mean = statistics.mean(ndcg[model, 0.0][s] for s in seeds)
                row = replace(row, p_vs_clean=p_value, seeds_vs_clean=len(seeds),
                              relative_change_vs_clean=noisy_mean / clean_mean - 1)
            summary.append(row)
    return summary
