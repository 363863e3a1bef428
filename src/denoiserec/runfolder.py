"""The run folder: the names and formats of everything a run writes, in one place.

A run folder holds::

    config.yaml      the resolved configuration (re-loadable with --config)
    fingerprint.json the inputs: sha256 of the prepared sequences (noise labels included) and
                     the configuration less what may change on resume
                     (``fingerprints.RESUMABLE_CHANGES``, ``READING_CHANGES``)
    metrics.json     protocol, dataset statistics, valid metrics per epoch, test at best,
                     timings, ``finished``
    best.pt last.pt  checkpoints (tensors only; loaded with weights_only=True)
    curve.png        training loss and valid metric per epoch
    test_ranks.csv   rank of every test target (user, item, rank) for paired tests
    detection.json   noise-detection quality of the trained model (``compare`` cells)
    .lock            the pid of the process training it (while it trains)

Beside a folder, ``<folder>.lock`` marks a compare cell claimed by a worker. Training, evaluation,
``compare``, ``clean`` and the benchmarks read and write these files through :class:`RunFolder`.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from denoiserec.atomic import atomic_write_text
from denoiserec.errors import ConfigError

CHECKPOINTS = ("best", "last")  # the weights a run keeps: best valid epoch, final epoch


@dataclass(frozen=True)
class RunFolder:
    """One run's folder (it need not exist yet)."""

    path: Path

    # -- the files ---------------------------------------------------------------------------
    @property
    def config(self) -> Path:
        return self.path / "config.yaml"

    @property
    def fingerprint(self) -> Path:
        return self.path / "fingerprint.json"

    @property
    def metrics(self) -> Path:
        return self.path / "metrics.json"

    def checkpoint(self, which: str) -> Path:
        """``best.pt`` or ``last.pt``."""
        if which not in CHECKPOINTS:
            raise ConfigError(f"checkpoint '{which}' unknown (choose {' or '.join(CHECKPOINTS)})")
        return self.path / f"{which}.pt"

    @property
    def curve(self) -> Path:
        return self.path / "curve.png"

    @property
    def test_ranks(self) -> Path:
        return self.path / "test_ranks.csv"

    @property
    def detection(self) -> Path:
        return self.path / "detection.json"

    @property
    def lock(self) -> Path:
        """Held by the process training the run."""
        return self.path / ".lock"

    @property
    def claim(self) -> Path:
        """``<folder>.lock`` beside the folder: a compare worker's claim on the cell."""
        return self.path.with_name(self.path.name + ".lock")

    # -- what the files say ------------------------------------------------------------------
    def is_run(self) -> bool:
        """The folder holds (the start of) a run."""
        return any(p.is_file() for p in (self.config, self.fingerprint, self.lock))

    def has_trained(self) -> bool:
        """At least one epoch was trained (``last.pt`` exists)."""
        return self.checkpoint("last").is_file()

    def read_metrics(self) -> dict[str, Any] | None:
        """``metrics.json``, None when the run has none yet."""
        if not self.metrics.is_file():
            return None
        try:
            return json.loads(self.metrics.read_text())
        except ValueError:
            raise ConfigError(f"{self.metrics}: not a metrics file (broken JSON)") from None

    def write_metrics(self, report: dict[str, Any]) -> None:
        atomic_write_text(self.metrics, json.dumps(report, indent=1))

    def finished(self) -> bool:
        """The run trained to its end and was tested."""
        metrics = self.read_metrics()
        return metrics is not None and bool(metrics.get("finished"))

    def trained_epochs(self) -> int:
        """Epochs recorded in ``metrics.json`` (0 without one)."""
        metrics = self.read_metrics()
        return len(metrics["epochs"]) if metrics is not None else 0

    def read_fingerprint(self) -> dict[str, Any] | None:
        if not self.fingerprint.is_file():
            return None
        try:
            return json.loads(self.fingerprint.read_text())
        except ValueError:
            raise ConfigError(f"{self.fingerprint}: not a fingerprint (broken JSON)") from None

    def write_fingerprint(self, fingerprint: dict[str, Any]) -> None:
        atomic_write_text(self.fingerprint, json.dumps(fingerprint, indent=1))

    def write_test_ranks(self, rows: list[tuple[str, str, int]]) -> None:
        """(user token, item token, rank) of every test target."""
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(["user", "item", "rank"])
        writer.writerows(rows)
        atomic_write_text(self.test_ranks, buffer.getvalue())

    def read_test_ranks(self) -> tuple[list[str], list[int]]:
        """(user tokens, ranks) of the test targets, in the file's order."""
        with open(self.test_ranks, newline="") as handle:
            rows = list(csv.DictReader(handle))
        return [r["user"] for r in rows], [int(r["rank"]) for r in rows]

    def read_detection(self) -> dict[str, Any] | None:
        return json.loads(self.detection.read_text()) if self.detection.is_file() else None

    def write_detection(self, report: dict[str, Any]) -> None:
        atomic_write_text(self.detection, json.dumps(report, indent=1))


def check_output(path: Path, ours: bool, what: str) -> None:
    """``path`` can take the output: absent, an empty folder, or a folder of ours (``ours``,
    which is ``what``); else a one-line error naming the problem."""
    if path.exists() and not path.is_dir():
        raise ConfigError(f"{path} is a file, not {what}; choose another --output")
    if path.is_dir() and not ours and any(path.iterdir()):
        raise ConfigError(f"{path} exists and is not {what}; choose another --output")


def check_run_output(path: Path) -> None:
    """``path`` can hold a run: absent, empty, or a run folder."""
    check_output(path, RunFolder(path).is_run(), "a denoiserec run directory")
