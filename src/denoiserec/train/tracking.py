"""Experiment tracking: TensorBoard event files and MLflow runs, each optional, each off by
default.

With ``track.tensorboard=true`` a run writes event files into ``RUN_DIR/tensorboard``; with
``track.mlflow=true`` it logs an MLflow run (its id kept in ``RUN_DIR/mlflow_run_id``, so a
resumed run goes on logging into the same MLflow run; epochs a kill left unlogged are logged
on resume). After every epoch both receive the same
scalars, at step = the epoch (counted from 0):

    train/loss                 the epoch's mean training loss
    loss/<part>                its parts, and a denoiser's liveness figures (``kept``: keep
                               rate, ``weight_entropy``, ``saturated``: models/denoiser.py)
    valid/<metric>             every valid metric (``ndcg@10``, ...); MLflow names write
                               ``@`` as ``_at_`` (``valid/ndcg_at_10``), a character it refuses
    valid/selection_value      what early stopping compares (trailing mean)
    train/lr                   the learning rate at the epoch's end
    time/train_seconds         the epoch's training time

MLflow also gets the resolved settings as parameters (dotted keys), the dataset, protocol and
commit as tags, the test metrics at the end, and ``config.yaml``, ``metrics.json`` and
``curve.png`` as artifacts. Nothing is imported, written or logged while both are off.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from denoiserec.atomic import atomic_write_text
from denoiserec.errors import ConfigError


@dataclass(frozen=True)
class TrackConfig:
    """Experiment trackers (``track.*``); they observe a run and change none of its numbers."""

    tensorboard: bool = False
    """Write TensorBoard event files to ``RUN_DIR/tensorboard`` (needs ``tensorboard``)."""
    mlflow: bool = False
    """Log an MLflow run (needs ``mlflow`` or ``mlflow-skinny``)."""
    mlflow_uri: str = ""
    """MLflow tracking URI (a server, ``sqlite:///...``, a folder); empty = MLflow's own
    default (``MLFLOW_TRACKING_URI`` when set)."""
    mlflow_experiment: str = "denoiserec"
    """MLflow experiment the runs go to (created when missing)."""

    @property
    def enabled(self) -> bool:
        return self.tensorboard or self.mlflow


def epoch_scalars(entry: dict[str, Any], lr: float) -> dict[str, float]:
    """The scalars of one epoch of the trainer's history (module docstring)."""
    scalars = {"train/loss": entry["train_loss"], "valid/selection_value":
               entry["selection_value"], "train/lr": lr,
               "time/train_seconds": entry["train_seconds"]}
    scalars.update({f"loss/{name}": value for name, value in entry["loss_parts"].items()})
    scalars.update({f"valid/{name}": value for name, value in entry["valid"].items()})
    return {key: float(value) for key, value in scalars.items()}


def mlflow_key(name: str) -> str:
    """A scalar's name as MLflow accepts it (no ``@``)."""
    return name.replace("@", "_at_")


def _flat(mapping: dict[str, Any], prefix: str = "") -> dict[str, str]:
    out: dict[str, str] = {}
    for key, value in mapping.items():
        if isinstance(value, dict):
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = str(value)
    return out


def _need(module: str, setting: str, extra: str) -> Any:
    try:
        return __import__(module, fromlist=["_"])
    except ImportError:
        raise ConfigError(f"{setting}=true needs {extra}: pip install 'denoiserec[track]'"
                          ) from None


class _TensorBoard:
    def __init__(self, run_dir: Path) -> None:
        _need("tensorboard", "track.tensorboard", "TensorBoard")
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(log_dir=str(run_dir / "tensorboard"))

    def epoch(self, step: int, scalars: dict[str, float]) -> None:
        for name, value in scalars.items():
            self.writer.add_scalar(name, value, step)
        self.writer.flush()

    def finish(self, test: dict[str, float], run_dir: Path) -> None:
        for name, value in test.items():
            self.writer.add_scalar(f"test/{name}", value, 0)
        self.writer.close()

    def stop(self) -> None:
        self.writer.close()


class _MLflow:
    def __init__(self, config: TrackConfig, run_dir: Path, settings: dict[str, Any],
                 tags: dict[str, str]) -> None:
        _need("mlflow", "track.mlflow", "MLflow")
        from mlflow import MlflowClient

        self.client = MlflowClient(tracking_uri=config.mlflow_uri or None)
        id_file = run_dir / "mlflow_run_id"
        if id_file.is_file():  # a resumed run logs on into its MLflow run
            self.run_id = id_file.read_text().strip()
            self.client.update_run(self.run_id, status="RUNNING")
            return
        experiment = self.client.get_experiment_by_name(config.mlflow_experiment)
        experiment_id = (experiment.experiment_id if experiment is not None
                         else self.client.create_experiment(config.mlflow_experiment))
        run = self.client.create_run(experiment_id, run_name=run_dir.name, tags=tags)
        self.run_id = run.info.run_id
        from mlflow.entities import Param

        params = [Param(k, v[:6000]) for k, v in _flat(settings).items()]
        for start in range(0, len(params), 100):  # MLflow takes at most 100 per batch
            self.client.log_batch(self.run_id, params=params[start:start + 100])
        id_file.write_text(self.run_id + "\n")

    def epoch(self, step: int, scalars: dict[str, float]) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        self.client.log_batch(self.run_id, metrics=[
            Metric(mlflow_key(name), value, now, step) for name, value in scalars.items()])

    def finish(self, test: dict[str, float], run_dir: Path) -> None:
        if test:
            self.epoch(0, {f"test/{name}": value for name, value in test.items()})
        for name in ("config.yaml", "metrics.json", "curve.png"):
            if (run_dir / name).is_file():
                self.client.log_artifact(self.run_id, str(run_dir / name))
        self.client.set_terminated(self.run_id)

    def stop(self) -> None:
        self.client.set_terminated(self.run_id, status="KILLED")


class Tracker:
    """The trackers a run's ``track`` settings turn on, fed once per epoch and at the end."""

    def __init__(self, config: TrackConfig, run_dir: Path, settings: dict[str, Any],
                 tags: dict[str, str]) -> None:
        self.run_dir = run_dir
        self.sinks: list[Any] = []
        if config.tensorboard:
            self.sinks.append(_TensorBoard(run_dir))
        if config.mlflow:
            self.sinks.append(_MLflow(config, run_dir, settings, tags))

    def epoch(self, trainer: Any) -> None:
        """Log the trainer's epochs not logged yet: the last one, and after a resume those a
        kill left checkpointed but unlogged (``RUN_DIR/tracked_epochs`` counts the logged)."""
        counter = self.run_dir / "tracked_epochs"
        logged = int(counter.read_text()) if counter.is_file() else 0
        lr = trainer.optimizer.param_groups[0]["lr"]  # constant within a resumed gap
        for entry in trainer.state.history[logged:]:
            for sink in self.sinks:
                sink.epoch(entry["epoch"], epoch_scalars(entry, lr))
        atomic_write_text(counter, str(len(trainer.state.history)))

    def finish(self, test: dict[str, float]) -> None:
        for sink in self.sinks:
            sink.finish(test, self.run_dir)

    def stop(self) -> None:
        """The run stopped before its end (interrupted, pruned): close what is open."""
        for sink in self.sinks:
            sink.stop()
