"""Typed configuration: dataclasses, YAML files and ``--set key=value`` overrides.

Every component owns a frozen dataclass of its settings next to the code that uses it. A run is
one :class:`RunConfig`; YAML files and command-line overrides are parsed into the *same*
dataclasses, and an unknown key or a wrongly typed value is an error naming the nearest valid key.

Everyday keys may be given unqualified when they map to exactly one field (``epochs`` means
``train.epochs``, ``lr`` means ``train.lr``); everything else is dotted: ``model.hidden_size=128``.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from dataclasses import dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any, Union

import yaml

from denoiserec.errors import ConfigError

SHORT_KEYS = {
    "epochs": "train.epochs",
    "lr": "train.lr",
    "batch_size": "train.batch_size",
    "seed": "train.seed",
    "dataset": "data.dataset",
    "max_len": "data.max_len",
    "protocol": "protocol.name",
}


@dataclass(frozen=True)
class DataConfig:
    """Which log to read and how to preprocess it."""

    dataset: str = "synthetic"
    """Known name (``denoiserec datasets``) or a path to a log file."""
    max_len: int = 50
    """Most recent items an input sequence holds (RecBole ``MAX_ITEM_LIST_LENGTH``)."""
    rating_threshold: float | None = None
    """Keep interactions with rating >= this; ``None`` keeps all (RecBole ``threshold: ~``)."""
    user_core: int = 0
    """Iterated k-core: drop users with fewer interactions (0 = off)."""
    item_core: int = 0
    """Iterated k-core: drop items with fewer interactions (0 = off)."""
    duplicates: str = "keep"
    """Repeated (user, item) pairs: ``keep`` all, or keep the ``first`` or ``last`` only."""
    time_order: str = "recbole"
    """Sort key: ``recbole`` = float32 min-max timestamp (RecBole 1.2.1), ``exact`` = raw."""
    columns: dict[str, str] = field(default_factory=dict)
    """Column mapping for CSV/TSV/Parquet: role (user, item, timestamp, rating, behaviour) ->
    column name."""


@dataclass(frozen=True)
class ProtocolConfig:
    """Evaluation protocol (see :mod:`denoiserec.protocols`)."""

    name: str = "recbole"
    """``recbole``, ``fmlp`` or ``sampled``."""
    n_negatives: int = 99
    """``sampled`` only: negatives ranked against the target."""
    negatives: str = "uniform"
    """``sampled`` only: ``uniform`` or ``popularity`` negatives."""
    seed: int = 0
    """``sampled`` only: seed of the fixed negatives."""


@dataclass(frozen=True)
class TrainConfig:
    """The training loop (one loop for every model)."""

    epochs: int = 200
    """Maximum number of epochs."""
    batch_size: int = 256
    """Training instances per batch."""
    lr: float = 1e-3
    """Adam learning rate."""
    weight_decay: float = 0.0
    """Adam weight decay (L2, as ``torch.optim.Adam``)."""
    clip_grad_norm: float = 0.0
    """Clip the gradient norm to this value; 0 = off (RecBole default)."""
    warmup_steps: int = 0
    """Linear learning-rate warm-up over this many batches, then constant."""
    loss: str = "ce"
    """``ce`` (softmax over all items) or ``bpr`` (with ``n_negatives`` sampled negatives)."""
    n_negatives: int = 1
    """BPR only: uniformly sampled negatives per positive."""
    instances: str = "prefix"
    """``prefix`` = every prefix is an instance (RecBole); ``window`` = all positions of a
    window at once (causal models; the original SASRec's training)."""
    valid_metric: str = "ndcg@10"
    """Early stopping and model selection metric, on the validation set."""
    patience: int = 10
    """Stop once more than this many evaluations brought no improvement (RecBole
    ``stopping_step``, same rule)."""
    eval_batch_size: int = 4096
    """Instances per evaluation batch."""
    seed: int = 2020
    """Seed of parameters, shuffling, dropout and sampling."""
    deterministic: bool = True
    """Request deterministic CUDA kernels (CPU runs are repeatable without it)."""
    device: str = "auto"
    """``auto`` (CUDA when present), ``cpu`` or ``cuda``."""
    threads: int = 0
    """CPU threads for torch; 0 = torch's default."""
    progress: bool = True
    """Show a progress bar."""


@dataclass(frozen=True)
class RunConfig:
    """Everything one training run depends on."""

    model: Any
    """The model's own config dataclass (its ``name`` picks the model)."""
    data: DataConfig = field(default_factory=DataConfig)
    protocol: ProtocolConfig = field(default_factory=ProtocolConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    noise: Any = None
    """Optional :class:`~denoiserec.noise.NoiseConfig`: noise injected into training data."""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _nearest(key: str, options: list[str]) -> str:
    close = difflib.get_close_matches(key, options, n=1)
    return f"; did you mean '{close[0]}'?" if close else f"; valid keys: {', '.join(options)}"


def _coerce(value: Any, annotation: Any, where: str) -> Any:
    """Check ``value`` against a field annotation, converting int->float where harmless."""
    origin = typing.get_origin(annotation)
    if origin in (Union, types.UnionType):
        options = typing.get_args(annotation)
        if value is None and type(None) in options:
            return None
        errors = []
        for option in options:
            if option is type(None):
                continue
            try:
                return _coerce(value, option, where)
            except ConfigError as err:
                errors.append(str(err))
        raise ConfigError(errors[0] if errors else f"{where}: invalid value {value!r}")
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return {str(k): v for k, v in value.items()}
    if origin is tuple or origin is list:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        inner = typing.get_args(annotation)[:1] or (Any,)
        return tuple(_coerce(v, inner[0], where) for v in value)
    if annotation is Any:
        return value
    if annotation is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if annotation is bool and not isinstance(value, bool):
        raise ConfigError(f"{where}: expected true/false, got {value!r}")
    if annotation in (int, float, str) and (
        not isinstance(value, annotation) or isinstance(value, bool)
    ):
        raise ConfigError(f"{where}: expected {annotation.__name__}, got {value!r}")
    return value


def build_dataclass(cls: type, values: dict[str, Any], where: str) -> Any:
    """Build ``cls`` from a (nested) mapping; unknown keys and bad types are errors."""
    if not isinstance(values, dict):
        raise ConfigError(f"{where}: expected a mapping, got {values!r}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in fields(cls) if f.init]
    kwargs: dict[str, Any] = {}
    for key, value in values.items():
        if key not in names:
            raise ConfigError(f"unknown config key '{where}.{key}'" + _nearest(key, names))
        annotation = hints[key]
        if is_dataclass(annotation) and isinstance(value, dict):
            kwargs[key] = build_dataclass(annotation, value, f"{where}.{key}")
        elif is_dataclass(annotation) and is_dataclass(value):
            kwargs[key] = value
        else:
            kwargs[key] = _coerce(value, annotation, f"{where}.{key}")
    return cls(**kwargs)


def parse_override(text: str) -> tuple[list[str], Any]:
    """``a.b=value`` -> (["a", "b"], value parsed as YAML)."""
    if "=" not in text:
        raise ConfigError(f"--set expects key=value, got '{text}'")
    key, raw = text.split("=", 1)
    key = SHORT_KEYS.get(key.strip(), key.strip())
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as err:
        raise ConfigError(f"--set {key}: cannot parse value '{raw}': {err}") from None
    return key.split("."), value


def merge(base: dict[str, Any], path: list[str], value: Any) -> None:
    node = base
    for part in path[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(f"cannot set '{'.'.join(path)}': '{part}' is not a section")
    node[path[-1]] = value


def deep_merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``base`` with ``update`` merged in, section by section."""
    out = dict(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def read_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        loaded = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {str(err).splitlines()[0]}") from None
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    return loaded


def resolve(raw: dict[str, Any]) -> RunConfig:
    """Turn a nested mapping (from YAML, overrides, or a saved run) into a :class:`RunConfig`."""
    from denoiserec.models import model_config_class  # the registry knows each model's config
    from denoiserec.noise.inject import NoiseConfig

    raw = dict(raw)
    model_raw = raw.pop("model", None) or {}
    if isinstance(model_raw, str):
        model_raw = {"name": model_raw}
    model_raw = dict(model_raw)
    name = model_raw.get("name", "sasrec")
    model_cls = model_config_class(name)
    model = build_dataclass(model_cls, model_raw, "model")
    sections = {"data": DataConfig, "protocol": ProtocolConfig, "train": TrainConfig}
    kwargs: dict[str, Any] = {"model": model}
    for key, value in raw.items():
        if key == "noise":
            kwargs[key] = None if value is None else build_dataclass(NoiseConfig, value, key)
        elif key in sections:
            kwargs[key] = build_dataclass(sections[key], value, key)
        else:
            raise ConfigError(
                f"unknown config section '{key}'" + _nearest(key, [*sections, "model", "noise"])
            )
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
        keys, value = parse_override(text)
        if keys == ["model"]:
            keys = ["model", "name"]
        merge(raw, keys, value)
    return resolve(raw)


def config_to_yaml(config: RunConfig) -> str:
    return yaml.safe_dump(config.to_dict(), sort_keys=False)
