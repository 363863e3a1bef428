"""A run's fingerprint: what its results depend on (the prepared sequences and the resolved
configuration), how a run folder's recorded one differs from a new one, and the run's
``config.yaml`` read back. A run folder is resumed, reused or evaluated only when these agree.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from denoiserec.config import read_yaml
from denoiserec.data.datasets import resolve_dataset_path
from denoiserec.data.digest import log_digest
from denoiserec.errors import ConfigError
from denoiserec.protocols import Split
from denoiserec.runconfig import RunConfig, differences, resolve
from denoiserec.runfolder import RunFolder

# settings that may change between an interrupted run and its resumption
RESUMABLE_CHANGES = {"epochs", "progress", "progress_seconds", "threads", "device",
                     "eval_batch_size", "eval_item_chunk"}
# how the data are read, not what they are: the same log either way (tested), and the
# fingerprint holds the log's digest
READING_CHANGES = {"engine", "memory_limit"}


def load_run_config(run_dir: Path | str) -> RunConfig:
    path = RunFolder(Path(run_dir)).config
    if not path.is_file():
        raise ConfigError(f"{run_dir}: not a run directory (no config.yaml)")
    try:
        return resolve(read_yaml(path))
    except ConfigError as err:
        message = str(err)
        raise ConfigError(message if message.startswith(str(path)) else f"{path}: {message}"
                          ) from None


def comparable(config_dict: dict[str, Any]) -> dict[str, Any]:
    """A config mapping, resolved (so defaults added since count), less RESUMABLE_CHANGES
    and READING_CHANGES."""
    out = json.loads(json.dumps(resolve(config_dict).to_dict()))
    for key in RESUMABLE_CHANGES:
        out["train"].pop(key, None)
    for key in READING_CHANGES:
        out["data"].pop(key, None)
    out.pop("track", None)  # trackers observe a run; they change none of its numbers
    return out


def fingerprint(config: RunConfig, split_: Split) -> dict[str, Any]:
    """What a run's results depend on: the prepared sequences and the configuration."""
    return {"dataset": config.data.dataset, "data": log_digest(split_.log, split_.eval_log),
            "config": comparable(config.to_dict())}


def recorded_fingerprint(run_dir: Path) -> dict[str, Any] | None:
    """The fingerprint ``run_dir`` records; from ``config.yaml`` alone (no data digest) for a
    run of an older denoiserec; None for no run."""
    folder = RunFolder(run_dir)
    recorded = folder.read_fingerprint()
    if recorded is not None:
        return recorded
    if folder.config.is_file():
        return {"config": load_run_config(run_dir).to_dict(), "data": None}
    return None


def unverifiable(run_dir: Path) -> str | None:
    """Why what ``run_dir``'s checkpoints were trained on cannot be checked (a phrase): they
    lack the fingerprint written beside them. None when there is one, or no checkpoint."""
    folder = RunFolder(run_dir)
    trained = any(folder.checkpoint(name).is_file() for name in ("last", "best"))
    if trained and not folder.fingerprint.is_file():
        return (f"has checkpoints but no {folder.fingerprint.name}, so the data and settings "
                "they were trained on cannot be checked")
    return None


def mismatch(run_dir: Path, now: dict[str, Any]) -> str | None:
    """How ``run_dir``'s inputs differ from the fingerprint ``now`` (a phrase), None if not."""
    missing = unverifiable(run_dir)
    if missing:
        return missing
    before = recorded_fingerprint(run_dir)
    if before is None:
        return None
    try:
        old = comparable(before["config"])
    except ConfigError as err:
        return f"holds a configuration this version cannot load ({err})"
    # runs of earlier versions stored a dataset path as typed: from here, it is the same file
    old["data"]["dataset"] = resolve_dataset_path(old["data"]["dataset"])
    new = now["config"]
    if old["data"]["dataset"] != new["data"]["dataset"]:
        return f"was trained on another dataset ({old['data']['dataset']}, now " \
               f"{new['data']['dataset']})"
    changed = differences(old, new)
    if changed:
        more = f" and {len(changed) - 3} more" if len(changed) > 3 else ""
        return f"was trained with another configuration ({'; '.join(changed[:3])}{more})"
    if before.get("data") not in (None, now["data"]):
        return (f"was trained on other data: {now['dataset']} now gives other sequences "
                f"(fingerprint {before['data'][:12]}, now {now['data'][:12]})")
    return None


def edited_settings(before: dict[str, Any] | None, config: RunConfig) -> str:
    """The model and data settings of ``config`` that differ from those the fingerprint
    ``before`` records (``key old, now new``; empty when none or no fingerprint)."""
    if before is None or before.get("data") is None:
        return ""
    old, new = comparable(before["config"]), comparable(config.to_dict())
    changed = differences({k: old[k] for k in ("model", "data")},
                          {k: new[k] for k in ("model", "data")})
    return "; ".join(changed[:3]) + (f" and {len(changed) - 3} more" if len(changed) > 3 else "")
