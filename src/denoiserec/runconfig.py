"""A run's settings: one section per component, each defined beside the code that reads it.

``model`` (the model's own dataclass; its ``name`` picks the model), ``data``
(:class:`~denoiserec.data.datasets.DataConfig`), ``protocol``
(:class:`~denoiserec.protocols.ProtocolConfig`), ``train``
(:class:`~denoiserec.train.trainer.TrainConfig`), ``noise``
(:class:`~denoiserec.noise.inject.NoiseConfig`, optional) and ``track``
(:class:`~denoiserec.train.tracking.TrackConfig`, experiment trackers). YAML files and
``--set key=value`` overrides land on the same dataclasses. Everyday keys may be given
unqualified (``epochs`` means ``train.epochs``, ``lr`` means ``train.lr``); everything else
is dotted:
``model.hidden_size=128``.
"""

from __future__ import annotations

import dataclasses
import difflib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from denoiserec.config import (
    build_dataclass,
    deep_merge,
    merge,
    nearest,
    parse_override,
    read_yaml,
)
from denoiserec.data.datasets import DataConfig
from denoiserec.errors import ConfigError
from denoiserec.models import model_class as model_class_of
from denoiserec.models import model_config_class
from denoiserec.noise.inject import NoiseConfig
from denoiserec.protocols import ProtocolConfig
from denoiserec.train.tracking import TrackConfig
from denoiserec.train.trainer import TrainConfig

SHORT_KEYS = {
    "epochs": "train.epochs",
    "lr": "train.lr",
    "batch_size": "train.batch_size",
    "seed": "train.seed",
    "dataset": "data.dataset",
    "max_len": "data.max_len",
    "protocol": "protocol.name",
}
SECTIONS = {"data": DataConfig, "protocol": ProtocolConfig, "train": TrainConfig,
            "track": TrackConfig}


@dataclass(frozen=True)
class RunConfig:
    """Everything one training run depends on."""

    model: Any
    """The model's own config dataclass (its ``name`` picks the model)."""
    data: DataConfig = field(default_factory=DataConfig)
    protocol: ProtocolConfig = field(default_factory=ProtocolConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    noise: NoiseConfig | None = None
    """Noise injected into the training data (None = none)."""
    track: TrackConfig = field(default_factory=TrackConfig)
    """Experiment trackers (TensorBoard, MLflow; off by default): they change no number."""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _unqualified(key: str, model_class: type) -> str:
    """The error for an unqualified key that is no everyday key: the sections' keys it may
    mean (``epoch`` -> ``train.epochs``, ``valid_metric`` -> ``train.valid_metric``)."""
    owners: dict[str, list[str]] = {short: [full] for short, full in SHORT_KEYS.items()}
    for section, cls in [*SECTIONS.items(), ("noise", NoiseConfig), ("model", model_class)]:
        for spec in dataclasses.fields(cls):
            full = f"{section}.{spec.name}"
            if full not in owners.setdefault(spec.name, []):
                owners[spec.name].append(full)
    close = [key] if key in owners else difflib.get_close_matches(key, list(owners), n=1)
    if not close:
        return f"unknown setting '{key}'; settings are dotted (train.epochs, model.hidden_size)"
    options = " or ".join(f"'{full}'" for full in owners[close[0]])
    return f"unknown setting '{key}'; did you mean {options}?"


def resolve(raw: dict[str, Any]) -> RunConfig:
    """Turn a nested mapping (from YAML, overrides, or a saved run) into a :class:`RunConfig`."""
    raw = dict(raw)
    model_raw = raw.pop("model", None) or {}
    if isinstance(model_raw, str):
        model_raw = {"name": model_raw}
    if not isinstance(model_raw, dict):
        raise ConfigError(f"model: expected a mapping or a model name, got {model_raw!r}")
    model_raw = dict(model_raw)
    model_class = model_config_class(model_raw.get("name", "sasrec"))
    model = build_dataclass(model_class, model_raw, "model")
    kwargs: dict[str, Any] = {"model": model}
    for key, value in raw.items():
        if key == "noise":
            kwargs[key] = None if value is None else build_dataclass(NoiseConfig, value, key)
        elif key in SECTIONS:
            kwargs[key] = build_dataclass(SECTIONS[key], value, key)
        elif not isinstance(value, dict):
            raise ConfigError(_unqualified(key, model_class))
        else:
            raise ConfigError(f"unknown config section '{key}'"
                              + nearest(key, [*SECTIONS, "model", "noise"]))
    config = RunConfig(**kwargs)
    check_task(model_class_of(model.name).task, config.protocol.name, config.train)
    return config


def check_task(task: str, protocol: str, train: TrainConfig) -> None:
    """A CTR model (``models/ctr.py``) trains on the ``ctr`` protocol's (history, candidate,
    label) samples, and ``auc`` exists under ``ctr`` only."""
    if task == "ctr" and protocol != "ctr":
        raise ConfigError(f"this is a CTR model: it trains on (history, candidate, label) "
                          f"samples of protocol=ctr, not protocol={protocol}")
    if task == "ctr" and (train.loss != "ce" or train.label_smoothing):
        raise ConfigError("a CTR model trains with binary cross-entropy: leave train.loss "
                          "and train.label_smoothing unset")
    if train.valid_metric == "auc" and protocol != "ctr":
        raise ConfigError("train.valid_metric=auc needs protocol=ctr")


def flatten(mapping: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"train": {"lr": 1}}`` -> ``{"train.lr": 1}`` (a None section stays one entry)."""
    out: dict[str, Any] = {}
    for key, value in mapping.items():
        if isinstance(value, dict) and value:
            out.update(flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def differences(before: dict[str, Any], now: dict[str, Any]) -> list[str]:
    """``key old, now new`` for every setting that differs between two config mappings."""
    old, new = flatten(before), flatten(now)
    return [f"{key} {old.get(key, '(unset)')}, now {new.get(key, '(unset)')}"
            for key in sorted(old.keys() | new.keys()) if old.get(key) != new.get(key)]


def load_config(
    path: str | Path | None = None,
    overrides: list[str] | tuple[str, ...] = (),
    base: dict[str, Any] | None = None,
) -> RunConfig:
    """Defaults <- ``base`` <- YAML file <- ``--set`` overrides, resolved into a RunConfig."""
    raw: dict[str, Any] = deep_merge({}, base or {})
    if path is not None:
        raw = deep_merge(raw, read_yaml(path))
    for text in overrides:
        keys, value = parse_override(text, SHORT_KEYS)
        if keys == ["model"]:
            keys = ["model", "name"]
        merge(raw, keys, value)
    return resolve(raw)


def config_to_yaml(config: RunConfig) -> str:
    return yaml.safe_dump(config.to_dict(), sort_keys=False)
