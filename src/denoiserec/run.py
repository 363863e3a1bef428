"""A run: config -> data -> split -> Trainer -> run directory with everything it measured.

Run directory layout::

    config.yaml      the resolved configuration (re-loadable with --config)
    metrics.json     protocol, dataset statistics, valid metrics per epoch, test at best, timings
    best.pt last.pt  checkpoints (tensors only; loaded with weights_only=True)
    curve.png        training loss and valid metric per epoch
    test_ranks.csv   rank of every test target (user, item, rank) for paired tests
"""

from __future__ import annotations

import csv
import io
import json
import time
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import yaml

from denoiserec.atomic import atomic_write_text
from denoiserec.data import Interactions, load_dataset
from denoiserec.errors import ConfigError
from denoiserec.models import build_model
from denoiserec.noise.inject import inject
from denoiserec.protocols import ProtocolConfig, Split, split
from denoiserec.report.plots import training_curve
from denoiserec.report.tables import metrics_table
from denoiserec.runconfig import RunConfig, config_to_yaml, load_config, resolve
from denoiserec.train.evaluate import Evaluation
from denoiserec.train.trainer import Trainer, prepare_torch

# settings that may change between an interrupted run and its resumption
RESUMABLE_CHANGES = {"epochs", "progress", "threads", "device", "eval_batch_size"}


@dataclass(frozen=True)
class RunResult:
    """What a finished run measured (also in ``run_dir/metrics.json``)."""

    run_dir: Path
    config: RunConfig
    protocol: str
    best_epoch: int
    valid: dict[str, float]
    test: dict[str, float]
    history: list[dict[str, Any]]

    def table(self) -> str:
        return metrics_table({"valid (best)": self.valid, "test": self.test})


def prepare(config: RunConfig, log: Interactions | None = None) -> Split:
    """Load (or take) the log, inject the configured noise, split it with the protocol."""
    log = load_dataset(config.data) if log is None else log
    if config.noise is not None and config.noise.ratio > 0:
        return split(inject(log, config.noise), config.protocol, eval_log=log)
    return split(log, config.protocol)


def make_trainer(config: RunConfig, split_: Split, run_dir: Path) -> Trainer:
    """Seed, build the model for the split's catalogue, and hand both to a Trainer."""
    prepare_torch(config.train)
    model = build_model(config.model, split_.log.n_items, config.data.max_len)
    return Trainer(model, split_, config.train, config.data.max_len, run_dir)


def default_run_dir(config: RunConfig) -> Path:
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    dataset = Path(config.data.dataset).stem
    return Path("runs") / f"{config.model.name}-{dataset}-{config.protocol.name}-{stamp}"


def _comparable(config_dict: dict[str, Any]) -> dict[str, Any]:
    out = json.loads(json.dumps(config_dict))
    for key in RESUMABLE_CHANGES:
        out["train"].pop(key, None)
    return out


def _claim_run_dir(run_dir: Path, config: RunConfig) -> None:
    """Create ``run_dir`` or check that it holds a run of the same configuration."""
    saved = run_dir / "config.yaml"
    if saved.is_file():
        before = _comparable(yaml.safe_load(saved.read_text()))
        now = _comparable(config.to_dict())
        if before != now:
            differing = [k for k in now if before.get(k) != now.get(k)]
            raise ConfigError(f"{run_dir} holds a run with another configuration (differs in "
                              f"{', '.join(differing)}); choose another --output")
    elif run_dir.exists() and any(run_dir.iterdir()):
        raise ConfigError(f"{run_dir} exists and is not a denoiserec run directory; "
                          "choose another --output")
    run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(saved, config_to_yaml(config))


def _write_ranks(path: Path, split_: Split, evaluation: Evaluation) -> None:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["user", "item", "rank"])
    log = split_.evaluation_log
    items = log.items[split_.test.targets]
    for user, item, rank in zip(evaluation.users, items, evaluation.ranks, strict=True):
        writer.writerow([log.user_tokens[user], log.item_tokens[item], int(rank)])
    atomic_write_text(path, buffer.getvalue())


def _report(trainer: Trainer, split_: Split, started: float) -> dict[str, Any]:
    history = trainer.state.history
    return {
        "model": trainer.model.name,
        "dataset": split_.log.name,
        "protocol": split_.protocol.name,
        "protocol_config": split_.protocol.__dict__,
        "dataset_statistics": split_.log.statistics(),
        "split_statistics": split_.statistics(),
        "valid_metric": trainer.train_config.valid_metric,
        "epochs": history,
        "best_epoch": trainer.state.best_epoch,
        "best_valid": history[trainer.state.best_epoch]["valid"] if history else {},
        "timings": {
            "mean_train_epoch_seconds": sum(e["train_seconds"] for e in history)
            / max(1, len(history)),
            "mean_valid_seconds": sum(e["valid_seconds"] for e in history) / max(1, len(history)),
            "wall_seconds_this_session": time.perf_counter() - started,
        },
        "device": str(trainer.device),
        "finished": False,
    }


def train_config(config: RunConfig, run_dir: Path | str | None = None,
                 log: Interactions | None = None) -> RunResult:
    """Train ``config`` into ``run_dir`` (resuming it if it holds an interrupted run)."""
    started = time.perf_counter()
    run_dir = Path(run_dir) if run_dir is not None else default_run_dir(config)
    split_ = prepare(config, log)
    _claim_run_dir(run_dir, config)
    trainer = make_trainer(config, split_, run_dir)
    trainer.resume()
    metrics_path = run_dir / "metrics.json"

    def write_progress(_: Any) -> None:
        atomic_write_text(metrics_path, json.dumps(_report(trainer, split_, started), indent=1))

    trainer.fit(on_epoch=write_progress)
    trainer.load_weights()
    test_started = time.perf_counter()
    test = trainer.evaluate("test")
    report = _report(trainer, split_, started)
    report.update(test=test.metrics, test_seconds=time.perf_counter() - test_started,
                  stopped_early=trainer.state.epoch < config.train.epochs, finished=True)
    atomic_write_text(metrics_path, json.dumps(report, indent=1))
    _write_ranks(run_dir / "test_ranks.csv", split_, test)
    training_curve(run_dir / "curve.png", trainer.state.history, config.train.valid_metric,
                   f"{config.model.name} on {split_.log.name} ({config.protocol.name})")
    return RunResult(run_dir=run_dir, config=config, protocol=config.protocol.name,
                     best_epoch=trainer.state.best_epoch, valid=report["best_valid"],
                     test=test.metrics, history=trainer.state.history)


def train(model: str = "sasrec", dataset: str = "synthetic", protocol: str = "recbole",
          config: str | Path | None = None, overrides: list[str] | tuple[str, ...] = (),
          output: str | Path | None = None, log: Interactions | None = None) -> RunResult:
    """Python API mirroring ``denoiserec train``; returns the run's :class:`RunResult`.

    ``model``/``dataset``/``protocol`` are defaults that a config file or overrides replace.
    """
    base = {"model": {"name": model}, "data": {"dataset": dataset},
            "protocol": {"name": protocol}}
    run_config = load_config(config, overrides, base=base)
    return train_config(run_config, output, log)


def load_run_config(run_dir: Path | str) -> RunConfig:
    path = Path(run_dir) / "config.yaml"
    if not path.is_file():
        raise ConfigError(f"{run_dir}: not a run directory (no config.yaml)")
    return resolve(yaml.safe_load(path.read_text()))


def restore(run_dir: Path | str, config: RunConfig | None = None,
            log: Interactions | None = None, checkpoint: str = "best") -> Trainer:
    """A Trainer holding the ``best`` (or ``last``) weights of ``run_dir``, data prepared anew."""
    run_dir = Path(run_dir)
    config = load_run_config(run_dir) if config is None else config
    config = replace(config, train=replace(config.train, progress=False))
    trainer = make_trainer(config, prepare(config, log), run_dir)
    trainer.load_weights(checkpoint)
    return trainer


def evaluate_run(run_dir: Path | str, protocol: str | None = None,
                 log: Interactions | None = None,
                 checkpoint: str = "best") -> dict[str, Evaluation]:
    """Re-evaluate a run's ``best`` (or ``last``) checkpoint on valid and test, optionally under
    another protocol."""
    config = load_run_config(run_dir)
    if protocol is not None:
        config = replace(config, protocol=ProtocolConfig(name=protocol))
    trainer = restore(run_dir, config, log, checkpoint)
    return {"valid": trainer.evaluate("valid"), "test": trainer.evaluate("test")}
