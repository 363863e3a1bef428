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
from dataclasses import dataclass, field, replace
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
from denoiserec.data.datasets import DataConfig, resolve_dataset_path
from denoiserec.errors import ConfigError
from denoiserec.models import model_class as model_class_of
from denoiserec.models import model_config_class
from denoiserec.noise.inject import NoiseConfig
from denoiserec.noise.inject import inert_settings as noise_inert_settings
from denoiserec.protocols import PROTOCOLS, ProtocolConfig
from denoiserec.protocols import inert_settings as protocol_inert_settings
from denoiserec.train.atjt_model import check_replaced
from denoiserec.train.settings import TrainConfig
from denoiserec.train.tracking import TrackConfig

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
    """The protocol trains models of this task (a CTR model, ``models/ctr.py``, only the
    ``ctr`` protocol's (history, candidate, label) samples) and reports the valid metric."""
    rules = PROTOCOLS[protocol]
    if task not in rules.tasks:
        serving = [name for name, cls in PROTOCOLS.items() if task in cls.tasks]
        kind = "a CTR model" if task == "ctr" else f"a {task} model"
        raise ConfigError(f"this is {kind}: it trains under protocol="
                          f"{' or '.join(serving)}, not protocol={protocol}")
    if task == "ctr" and (train.loss != "ce" or train.label_smoothing):
        raise ConfigError("a CTR model trains with binary cross-entropy: leave train.loss "
                          "and train.label_smoothing unset")
    if train.valid_metric in {m for cls in PROTOCOLS.values() for m in cls.metrics} and \
            train.valid_metric not in rules.metrics:
        owners = [name for name, cls in PROTOCOLS.items() if train.valid_metric in cls.metrics]
        raise ConfigError(f"train.valid_metric={train.valid_metric} needs protocol="
                          f"{' or '.join(owners)}")


def check_settings_apply(config: RunConfig) -> None:
    """Refuse settings that would do nothing in this run, each section judging its own:
    another protocol's settings, noise settings without noise, ATJT replacing more items than
    a history holds."""
    inert = [*protocol_inert_settings(config.protocol), *noise_inert_settings(config.noise)]
    if inert:
        raise ConfigError(f"{inert[0]}; remove it")
    check_replaced(config.train.reweight, config.train.atjt, config.data.max_len)


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
    """Defaults <- ``base`` <- YAML file <- ``--set`` overrides, resolved into a RunConfig.

    ``overrides`` may be one ``"key=value"`` string. A dataset given as a path is stored
    resolved (absolute), so a run folder's ``config.yaml`` finds it from any directory.
    """
    if isinstance(overrides, str):
        overrides = [overrides]
    raw: dict[str, Any] = deep_merge({}, base or {})
    from_file: dict[str, Any] = {}
    if path is not None:
        from_file = read_yaml(path)
        raw = deep_merge(raw, from_file)
    for text in overrides:
        keys, value = parse_override(text, SHORT_KEYS)
        if keys == ["model"]:
            keys = ["model", "name"]
        merge(raw, keys, value)
    try:
        config = resolve(raw)
    except ConfigError as err:
        conflict = model_conflict(path, from_file, raw)
        raise ConfigError(conflict or str(err)) from None
    return replace(config, data=replace(config.data,
                                        dataset=resolve_dataset_path(config.data.dataset)))


def model_conflict(path: str | Path | None, from_file: dict[str, Any],
                   raw: dict[str, Any]) -> str | None:
    """When the file configures one model and ``--model`` / ``--set model=`` asked for
    another (whose settings then fail to build), that conflict, in words."""
    section = from_file.get("model")
    if not isinstance(section, dict) or "name" not in section:
        return None
    asked = raw.get("model", {}).get("name") if isinstance(raw.get("model"), dict) else None
    if asked in (None, section["name"]):
        return None
    return (f"{path} configures model {section['name']} (its model.* settings), but model "
            f"{asked} was asked for; drop --model or use a config file of {asked}")


def config_to_yaml(config: RunConfig) -> str:
    return yaml.safe_dump(config.to_dict(), sort_keys=False)
