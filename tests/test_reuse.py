"""A finished run (or compare cell) is reused only when nothing that changes its results changed.

Every setting of every section and of every registered model, one at a time (not a sample):
the run directory records the fingerprint of a base configuration, the setting gets another
valid value, and the decision both ``train`` and ``compare`` take (``run.mismatch`` against
``run.fingerprint``) must refuse, naming the setting. Only the settings a resumed run may
change (``RESUMABLE_CHANGES``: epochs, progress bar, threads, device, evaluation batch size
and item chunk) and how the data are read (``READING_CHANGES``: engine, memory limit; the log's
digest is in the fingerprint) are exempt, and each of them must be accepted.
"""

from __future__ import annotations

import copy
import re
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from denoiserec import run as run_module
from denoiserec.errors import ConfigError
from denoiserec.fingerprints import READING_CHANGES, RESUMABLE_CHANGES, fingerprint, mismatch
from denoiserec.models import MODELS
from denoiserec.runconfig import RunConfig, differences, flatten, load_config, resolve
from denoiserec.runfolder import RunFolder

# settings valid only beside another one: the base of such a key sets the other first
COMPANIONS = {
    "train.atjt.": ["train.reweight=atjt"],
    "protocol.ctr.": ["protocol=ctr"],
    "train.window_": ["train.instances=window"],
    "train.n_negatives": ["train.loss=bpr"],
    "protocol.n_negatives": ["protocol=sampled"],
}
# the resumable training settings, how the data are read, and the trackers (they observe a
# run, change none of it)
EXEMPT = {f"train.{key}" for key in RESUMABLE_CHANGES} | {
    f"data.{key}" for key in READING_CHANGES} | {
    "track.tensorboard", "track.mlflow", "track.mlflow_uri", "track.mlflow_experiment"}


def _base(model: str, key: str) -> RunConfig:
    protocol = "ctr" if MODELS[model].task == "ctr" else "recbole"
    extra = [o for prefix, overrides in COMPANIONS.items() if key.startswith(prefix)
             for o in overrides]
    if MODELS[model].task == "ctr":
        extra = [o for o in extra if not o.startswith("train.loss")]
    return load_config(overrides=[f"model={model}", f"protocol={protocol}", "noise.ratio=0.1",
                                  *extra])


def _set(mapping: dict[str, Any], key: str, value: Any) -> dict[str, Any]:
    out = copy.deepcopy(mapping)
    node = out
    *parents, last = key.split(".")
    for part in parents:
        node = node[part]
    node[last] = value
    return out


def _candidates(key: str, value: Any, error: str = "") -> list[Any]:
    """Other values for ``key`` (the choices an error message lists first)."""
    listed = re.search(r"must be one of ([^;]+);", error)
    if listed:
        return [c.strip() for c in listed.group(1).split(",") if c.strip() != value]
    if isinstance(value, bool):
        return [not value]
    if isinstance(value, int):
        return [value + 1, value - 1, 2 * value, 1, 2]
    if isinstance(value, float):
        return [value * 2 if value else 0.5, value / 2, value + 0.1, 0.05, 0.9]
    if isinstance(value, str):
        return [f"{value}x", "1", "2GB"]
    if isinstance(value, (list, tuple)) and value:
        return [[value[0] + 1, *value[1:]], list(value[:-1])]
    return [1, 0.5, "x", True]


def _changed(base: RunConfig, key: str) -> RunConfig | None:
    """``base`` with another valid value at ``key``, or None when none is found."""
    mapping = base.to_dict()
    value = flatten(mapping)[key]
    if key == "model.name":  # another model of the same task, with its own defaults
        task = MODELS[value].task
        other = next(n for n, cls in sorted(MODELS.items()) if cls.task == task and n != value)
        return resolve({**mapping, "model": {"name": other}})
    if key == "model.backbone.name":  # another backbone, with its own defaults
        other = next(n for n in ("sasrec", "gru4rec", "bert4rec") if n != value)
        return resolve(_set(mapping, "model.backbone", {"name": other}))
    if key == "data.columns":
        return resolve(_set(mapping, key, {"user": "user_id"}))
    try:
        resolve(_set(mapping, key, "\x00not a value"))
        error = ""
    except (ConfigError, TypeError, ValueError) as err:
        error = str(err)
    for candidate in _candidates(key, value, error):
        try:
            return resolve(_set(mapping, key, candidate))
        except (ConfigError, TypeError, ValueError):
            continue
    return None


def _fingerprint(config: RunConfig, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """``run.fingerprint`` with a fixed data digest (the data are not read here)."""
    monkeypatch.setattr(run_module, "log_digest", lambda *_: "same data")
    return fingerprint(config, SimpleNamespace(log=None, eval_log=None))


def _keys(model: str) -> list[str]:
    keys = flatten(_base(model, "").to_dict())
    keys.update(flatten(_base(model, "train.atjt.").to_dict()))
    keys.update(flatten(_base(model, "protocol.ctr.").to_dict()))
    return sorted(k for k in keys if k.startswith("model.") or model == "sasrec")


@pytest.mark.parametrize("model", sorted(MODELS))
def test_a_run_is_not_reused_after_any_setting_that_changes_results(
        model: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """sasrec's cases cover every section's keys, each model's its own ``model.*`` keys."""
    unchanged, reused = [], []
    for key in _keys(model):
        base = _base(model, key)
        changed = _changed(base, key)
        if changed is None:
            unchanged.append(key)
            continue
        RunFolder(tmp_path).write_fingerprint(_fingerprint(base, monkeypatch))
        problem = mismatch(tmp_path, _fingerprint(changed, monkeypatch))
        if key in EXEMPT:
            assert problem is None, f"{key} may change on resume, yet: {problem}"
        elif problem is None:
            reused.append(key)
        elif len(differences(base.to_dict(), changed.to_dict())) == 1:  # it alone: named
            assert key in problem or "another dataset" in problem, problem
    assert not unchanged, f"no other valid value found for {unchanged}: extend COMPANIONS"
    assert not reused, f"a run trained with other {reused} would be reused"


def test_the_exempt_settings_are_the_resumable_ones() -> None:
    assert {"epochs", "progress", "progress_seconds", "threads", "device",
            "eval_batch_size", "eval_item_chunk"} == RESUMABLE_CHANGES
    assert {"engine", "memory_limit"} == READING_CHANGES
