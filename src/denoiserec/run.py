"""A run: config -> data -> split -> Trainer -> run directory with everything it measured
(its files, their names and formats: :mod:`denoiserec.runfolder`).

Nothing is written before the configuration, the data and the model have been built. A run
directory that holds trained epochs is only resumed with the same fingerprint, and is only
evaluated on data that still gives the same sequences.
"""

from __future__ import annotations

import dataclasses
import json
import time
import warnings
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from denoiserec.atomic import atomic_write_text, holder_alive, lock_holder, pid_lock
from denoiserec.data import Interactions, load_dataset
from denoiserec.data.digest import log_digest
from denoiserec.errors import ConfigError, DataError
from denoiserec.fingerprints import (
    edited_settings,
    fingerprint,
    load_run_config,
    mismatch,
    recorded_fingerprint,
    unverifiable,
)
from denoiserec.models import build_model, model_class
from denoiserec.noise.inject import inject
from denoiserec.protocols import Split, protocol_of, split
from denoiserec.provenance import code_version
from denoiserec.report.plots import training_curve
from denoiserec.report.tables import metrics_table
from denoiserec.runconfig import (
    RunConfig,
    check_settings_apply,
    check_task,
    config_to_yaml,
    load_config,
)
from denoiserec.runfolder import RunFolder, check_run_output
from denoiserec.train import distributed
from denoiserec.train.evaluate import Evaluation
from denoiserec.train.memory import check_memory
from denoiserec.train.tracking import Tracker
from denoiserec.train.trainer import Trainer, prepare_torch, resolve_device

OnEpoch = Callable[[Trainer], None]


@dataclass(frozen=True)
class RunResult:
    """What a finished run measured (also in ``run_dir/metrics.json``)."""

    run_dir: Path
    config: RunConfig
    protocol: str
    dataset: str
    best_epoch: int
    """The selected epoch, counted from 0 (as in the epoch lines and ``metrics.json``)."""
    valid: dict[str, float]
    test: dict[str, float]
    history: list[dict[str, Any]]

    def table(self) -> str:
        """The valid (best epoch) and test metrics, under the dataset and protocol."""
        return (f"dataset: {self.dataset}   protocol: {self.protocol}\n"
                + metrics_table({"valid (best)": self.valid, "test": self.test}))


def load_log(config: RunConfig) -> Interactions:
    """The configured dataset, with the test file it ships (RetailRocket) where the protocol
    reads one (``target`` with ``shipped_split``)."""
    return load_dataset(config.data,
                        shipped_test=protocol_of(config.protocol).reads_shipped_test)


def prepare(config: RunConfig, log: Interactions | None = None) -> Split:
    """Load (or take) the log, inject the configured noise, split it with the protocol."""
    log = load_log(config) if log is None else log
    if log.n_items < 2:  # every metric would be 1.0: there is nothing to rank
        raise DataError(f"{log.name}: a catalogue of {log.n_items} item; recommending needs "
                        "at least 2 items (is the item column the right one?)")
    if config.noise is not None and config.noise.ratio > 0:
        split_ = split(inject(log, config.noise), config.protocol, eval_log=log)
    else:
        split_ = split(log, config.protocol)
    if len(split_.valid) == 0:
        raise DataError(f"{log.name}: no user has enough interactions for a validation target "
                        "(4 or more)")
    return split_


def make_trainer(config: RunConfig, split_: Split, run_dir: Path) -> Trainer:
    """Seed, build the model for the split's catalogue, and hand both to a Trainer."""
    check_memory(config.model, split_, config.data.max_len, config.train.batch_size,
                 config.train.instances == "window", resolve_device(config.train.device),
                 config.train.loss, config.train.n_negatives, distributed.world_size())
    prepare_torch(config.train)
    model = build_model(config.model, split_.log.n_items, config.data.max_len)
    return Trainer(model, split_, config.train, config.data.max_len, run_dir)


def default_run_dir(config: RunConfig) -> Path:
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    dataset = Path(config.data.dataset).stem
    return Path("runs") / f"{config.model.name}-{dataset}-{config.protocol.name}-{stamp}"


def _test_ranks(split_: Split, evaluation: Evaluation) -> list[tuple[str, str, int]]:
    """(user token, item token, rank) of every test target."""
    log = split_.evaluation_log
    items = log.items[split_.test.targets]
    return [(log.user_tokens[user], log.item_tokens[item], int(rank))
            for user, item, rank in zip(evaluation.users, items, evaluation.ranks, strict=True)]


def _report(trainer: Trainer, split_: Split, started: float) -> dict[str, Any]:
    history = trainer.state.history
    return {
        "model": trainer.model.name,
        "dataset": split_.log.name,
        "protocol": split_.protocol.name,
        "protocol_config": dataclasses.asdict(split_.protocol),
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
        "code": code_version(),
        "finished": False,
    }


def _announce(config: RunConfig, split_: Split, run_dir: Path, defaulted: bool) -> None:
    where = (f"a new folder {run_dir.resolve()} (no output given; choose one with --output or "
             "output=)" if defaulted else str(run_dir))
    print(f"training {config.model.name} on {split_.log.name} ({config.protocol.name} "
          f"protocol) into {where}", flush=True)
    noise = config.noise
    if noise is not None and noise.ratio > 0:
        share = "" if noise.users == 1 else f", {noise.users:g} of the users"
        print(f"noise: {noise.kind} {noise.ratio:g} (per {noise.per}{share}, seed {noise.seed}) "
              "on the training part; valid and test inputs come from the clean log", flush=True)


def train_config(config: RunConfig, run_dir: Path | str | None = None,
                 log: Interactions | None = None, on_epoch: OnEpoch | None = None,
                 test: bool = True) -> RunResult:
    """Train ``config`` into ``run_dir`` (resuming it if it holds an interrupted run).

    ``on_epoch(trainer)`` runs after every epoch's line (tracking, pruning: it may raise to
    stop the run, which then resumes like an interrupted one); under torchrun on rank 0 only,
    so it must not stop a run there. ``test=False`` selects on valid
    and leaves the test set untouched (a tuning trial: :func:`test_run` tests it later).
    Under torchrun every rank runs this (``train/distributed.py``); rank 0 alone holds the
    lock and writes the run directory, and picks ``run_dir`` when none is given.
    """
    started = time.perf_counter()
    check_settings_apply(config)
    defaulted = run_dir is None
    ranks = distributed.start(resolve_device(config.train.device))
    try:
        run_dir = Path(distributed.agree(
            str(run_dir if run_dir is not None else default_run_dir(config)), ranks))
        check_run_output(run_dir)
        split_ = prepare(config, log)
        trainer = make_trainer(config, split_, run_dir)  # builds the model; writes nothing
        now = fingerprint(config, split_)
        if ranks.is_main:
            run_dir.mkdir(parents=True, exist_ok=True)
        lock = RunFolder(run_dir).lock
        with pid_lock(lock) if ranks.is_main else nullcontext(True) as mine:
            if not distributed.agree(mine, ranks):
                holder = lock_holder(lock)
                raise ConfigError(f"{run_dir} is being trained by process {holder}; wait for it "
                                  f"or choose another --output (if process {holder} is not a "
                                  f"denoiserec run, delete {lock})")
            return _train_locked(config, split_, trainer, now, started, defaulted, on_epoch,
                                 test)
    finally:
        distributed.stop()


def _train_locked(config: RunConfig, split_: Split, trainer: Trainer, now: dict[str, Any],
                  started: float, defaulted: bool, on_epoch: OnEpoch | None,
                  test: bool) -> RunResult:
    run_dir, folder = trainer.run_dir, trainer.folder
    # trained epochs: only the same inputs may resume (rank 0's folder decides for all ranks)
    problem = mismatch(run_dir, now) if folder.has_trained() else None
    problem = distributed.agree(problem, trainer.ranks)
    if problem:
        raise ConfigError(f"{run_dir} {problem}; choose another --output")
    if trainer.resume():
        done = trainer.state.epoch
        if done > config.train.epochs:
            raise ConfigError(f"{run_dir} has trained {done} epochs, more than train.epochs="
                              f"{config.train.epochs}; choose another --output")
        if trainer.ranks.is_main:
            print(f"resumed from epoch {done} ({done} epochs done; epochs count from 0)",
                  flush=True)
    main = trainer.ranks.is_main  # the one process that writes (and prints)
    if main:
        folder.write_fingerprint(now)
        atomic_write_text(folder.config, config_to_yaml(config))
        _announce(config, split_, run_dir, defaulted)

    tracker = (Tracker(config.track, run_dir, config.to_dict(), {
        "dataset": split_.log.name, "protocol": config.protocol.name,
        "commit": str(code_version()["commit"])}) if config.track.enabled and main else None)

    def write_progress(_: Any) -> None:
        folder.write_metrics(_report(trainer, split_, started))
        if tracker is not None:
            tracker.epoch(trainer)
        if on_epoch is not None:
            on_epoch(trainer)

    try:
        trainer.fit(on_epoch=write_progress if main else None)
    except BaseException:
        if tracker is not None:
            tracker.stop()
        raise
    report = _report(trainer, split_, started)
    report.update(stopped_early=trainer.state.epoch < config.train.epochs, finished=True,
                  processes=trainer.ranks.world)
    tested: dict[str, float] = {}
    if test:
        trainer.load_weights()
        tested = _test(trainer, report)
    if main:
        folder.write_metrics(report)
        training_curve(folder.curve, trainer.state.history, config.train.valid_metric,
                       f"{config.model.name} on {split_.log.name} ({config.protocol.name})")
    if tracker is not None:
        tracker.finish(tested)
    return RunResult(run_dir=run_dir, config=config, protocol=config.protocol.name,
                     dataset=split_.log.name, best_epoch=trainer.state.best_epoch,
                     valid=report["best_valid"], test=tested,
                     history=trainer.state.history)


def _test(trainer: Trainer, report: dict[str, Any]) -> dict[str, float]:
    """Evaluate the loaded weights on test once: into ``report`` and ``test_ranks.csv``."""
    started = time.perf_counter()
    test = trainer.evaluate("test")
    report.update(test=test.metrics, test_seconds=time.perf_counter() - started)
    if trainer.ranks.is_main:
        trainer.folder.write_test_ranks(_test_ranks(trainer.split, test))
    return test.metrics


def test_run(run_dir: Path | str, log: Interactions | None = None) -> dict[str, float]:
    """Test a run trained with ``test=False`` on its best checkpoint, once: the metrics are
    added to its ``metrics.json`` (with ``test_ranks.csv``); a run tested before is not
    tested again (its recorded metrics are returned)."""
    run_dir = Path(run_dir)
    folder = RunFolder(run_dir)
    report = folder.read_metrics()
    if report is None:
        raise ConfigError(f"{run_dir}: not a finished run (no metrics.json)")
    if report.get("test"):
        return report["test"]
    if not report.get("finished"):
        raise ConfigError(f"{run_dir}: training has not finished; nothing to test yet")
    trainer = restore(run_dir, log=log)
    with pid_lock(folder.lock) as mine:
        if not mine:
            raise ConfigError(f"{run_dir} is in use by process {lock_holder(folder.lock)}")
        tested = _test(trainer, report)
        folder.write_metrics(report)
    return tested


def train(model: str = "sasrec", dataset: str = "synthetic", protocol: str = "recbole",
          config: str | Path | None = None, overrides: list[str] | tuple[str, ...] = (),
          output: str | Path | None = None, log: Interactions | None = None) -> RunResult:
    """Python API mirroring ``denoiserec train``; returns the run's :class:`RunResult`.

    ``model``/``dataset``/``protocol`` are defaults that a config file or overrides replace;
    ``overrides`` is a list of ``"key=value"`` (or one such string). Without ``output`` the run
    goes to a new folder ``runs/<model>-<dataset>-<protocol>-<time>`` under the working
    directory (printed when training starts).
    """
    base = {"model": {"name": model}, "data": {"dataset": dataset},
            "protocol": {"name": protocol}}
    run_config = load_config(config, overrides, base=base)
    return train_config(run_config, output, log)


def unfinished(run_dir: Path, checkpoint: str) -> str | None:
    """A note when ``run_dir``'s training has not finished: its checkpoint is the one of the
    epochs done so far. None for a finished run."""
    try:
        report = json.loads((run_dir / "metrics.json").read_text())
    except (OSError, ValueError):
        report = {}
    if report.get("finished"):
        return None
    epochs = len(report.get("epochs", []))
    done = f"{epochs} epoch{'' if epochs == 1 else 's'} done"
    lock = RunFolder(run_dir).lock
    if holder_alive(lock):
        return (f"{run_dir} is still being trained by process {lock_holder(lock)} "
                f"({done}): these are the {checkpoint} checkpoint's numbers so far")
    return (f"{run_dir} did not finish training ({done}; the same train command resumes it): "
            f"these are the {checkpoint} checkpoint's numbers so far")


def restore(run_dir: Path | str, config: RunConfig | None = None,
            log: Interactions | None = None, checkpoint: str = "best") -> Trainer:
    """A Trainer holding the ``best`` (or ``last``) weights of ``run_dir``, data prepared anew
    (and refused unless they give the sequences the run was trained on)."""
    run_dir = Path(run_dir)
    config = load_run_config(run_dir) if config is None else config
    config = replace(config, train=replace(config.train, progress=False))
    missing = unverifiable(run_dir)
    if missing:
        raise DataError(f"{run_dir} {missing}; restore the file, or train anew into another "
                        "--output")
    before = recorded_fingerprint(run_dir)
    edited = edited_settings(before, config)
    if edited:
        recorded = RunFolder(run_dir).fingerprint.name
        raise ConfigError(f"{run_dir}/config.yaml was edited after training ({edited}); its "
                          f"checkpoints hold the model {recorded} records")
    split_ = prepare(config, log)
    digest = log_digest(split_.log, split_.eval_log)
    if before is not None and before.get("data") not in (None, digest):
        raise DataError(f"{run_dir} was trained on other data: {config.data.dataset} now gives "
                        f"other sequences (fingerprint {before['data'][:12]}, now "
                        f"{digest[:12]})")
    trainer = make_trainer(config, split_, run_dir)
    trainer.load_weights(checkpoint)
    return trainer


def evaluate_run(run_dir: Path | str, protocol: str | None = None,
                 log: Interactions | None = None,
                 checkpoint: str = "best") -> dict[str, Evaluation]:
    """Re-evaluate a run's ``best`` (or ``last``) checkpoint on valid and test, optionally under
    another protocol."""
    config = load_run_config(run_dir)
    if protocol is not None:  # a CTR model ranks only its protocol's candidates
        check_task(model_class(config.model.name).task, protocol, config.train)
        config = replace(config, protocol=replace(config.protocol, name=protocol))
    note = unfinished(Path(run_dir), checkpoint)
    if note:
        warnings.warn(note, stacklevel=2)
    trainer = restore(run_dir, config, log, checkpoint)
    return {"valid": trainer.evaluate("valid"), "test": trainer.evaluate("test")}
