"""A run's settings: one section per component, each defined beside the code that reads it.

``model`` (the model's own dataclass; its ``name`` picks the model), ``data``
(:class:`~denoiserec.data.datasets.DataConfig`), ``protocol``
(:class:`~denoiserec.protocols.ProtocolConfig`), ``train``
(:class:`~denoiserec.train.trainer.TrainConfig`) and ``noise``
(:class:`~denoiserec.noise.inject.NoiseConfig`, optional). YAML files and ``--set key=value``
overrides land on the same dataclasses. Everyday keys may be given unqualified (``epochs`` means
``train.epochs``, ``lr`` means ``train.lr``); everything else is dotted:
``model.hidden_size=128``.
"""

from __future__ import annotations

import dataclasses
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
from denoiserec.models import model_config_class
from denoiserec.noise.inject import NoiseConfig
from denoiserec.protocols import ProtocolConfig
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
SECTIONS = {"data": DataConfig, "protocol": ProtocolConfig, "train": TrainConfig}


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

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def resolve(raw: dict[str, Any]) -> RunConfig:
    """Turn a nested mapping (from YAML, overrides, or a saved run) into a :class:`RunConfig`."""
    raw = dict(raw)
    model_raw = raw.pop("model", None) or {}
    if isinstance(model_raw, str):
        model_raw = {"name": model_raw}
    model_raw = dict(model_raw)
    model = build_dataclass(model_config_class(model_raw.get("name", "sasrec")), model_raw,
                            "model")
    kwargs: dict[str, Any] = {"model": model}
    for key, value in raw.items():
        if key == "noise":
            kwargs[key] = None if value is None else build_dataclass(NoiseConfig, value, key)
        elif key in SECTIONS:
            kwargs[key] = build_dataclass(SECTIONS[key], value, key)
        else:
            raise ConfigError(f"unknown config section '{key}'"
                              + nearest(key, [*SECTIONS, "model", "noise"]))
    return RunConfig(**kwargs)


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
