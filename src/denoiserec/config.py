"""Settings machinery: typed dataclasses built from YAML mappings and ``key=value`` overrides.

This module knows no setting itself. Every component owns a frozen dataclass of its settings
beside the code that reads it (``data.datasets.DataConfig``, ``protocols.ProtocolConfig``,
``train.trainer.TrainConfig``, ``noise.inject.NoiseConfig``, each model's config); the run's
:class:`~denoiserec.runconfig.RunConfig` groups them. Mappings are checked against the field
types here (an unknown key or a wrong type is an error naming the nearest valid key); each
dataclass checks its own values in ``__post_init__`` with :func:`check_choice` and
:func:`check_range`, so a bad value fails when the config loads, before anything is written.

A field whose metadata holds ``{"config_class": f}`` is a nested, *named* config (a denoiser's
``backbone``): ``f(name)`` gives the dataclass for the mapping's ``name``; keys given without a
new name are merged onto the field's default.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import types
import typing
from dataclasses import fields, is_dataclass
from pathlib import Path
from typing import Any, Union

import yaml

from denoiserec.errors import ConfigError


def check_choice(where: str, value: str, allowed: tuple[str, ...] | list[str]) -> None:
    """A choice-like setting must be one of ``allowed``."""
    if value not in allowed:
        close = difflib.get_close_matches(str(value), list(allowed), n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise ConfigError(f"{where} must be one of {', '.join(allowed)}; got '{value}'{hint}")


def check_range(where: str, value: float, low: float | None = None, high: float | None = None,
                *, low_open: bool = False, high_open: bool = False) -> None:
    """A number must be finite and inside [low, high] (``*_open``: the end excluded)."""
    if not math.isfinite(value):
        raise ConfigError(f"{where} must be a finite number; got {value}")
    too_low = low is not None and (value <= low if low_open else value < low)
    too_high = high is not None and (value >= high if high_open else value > high)
    if too_low or too_high:
        left = "-inf" if low is None else f"{low:g}"
        right = "inf" if high is None else f"{high:g}"
        interval = f"{'(' if low_open or low is None else '['}{left}, {right}" \
                   f"{')' if high_open or high is None else ']'}"
        raise ConfigError(f"{where} must be in {interval}; got {value}")


def nearest(key: str, options: list[str]) -> str:
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
    by_name = {f.name: f for f in fields(cls) if f.init}
    names = list(by_name)
    kwargs: dict[str, Any] = {}
    for key, value in values.items():
        if key not in names:
            raise ConfigError(f"unknown config key '{where}.{key}'" + nearest(key, names))
        annotation = hints[key]
        chooser = by_name[key].metadata.get("config_class")
        if chooser is not None:
            kwargs[key] = _build_named(chooser, by_name[key], value, f"{where}.{key}")
        elif is_dataclass(annotation) and isinstance(value, dict):
            kwargs[key] = build_dataclass(annotation, value, f"{where}.{key}")
        elif is_dataclass(annotation) and is_dataclass(value):
            kwargs[key] = value
        else:
            kwargs[key] = _coerce(value, annotation, f"{where}.{key}")
    return cls(**kwargs)


def _build_named(chooser: Any, spec: dataclasses.Field, value: Any, where: str) -> Any:
    """A nested named config: ``value`` is a dataclass or a mapping with an optional ``name``."""
    if is_dataclass(value):
        return value
    if isinstance(value, str):
        value = {"name": value}
    if not isinstance(value, dict):
        raise ConfigError(f"{where}: expected a mapping, got {value!r}")
    default = spec.default_factory() if callable(spec.default_factory) else spec.default
    name = value.get("name", default.name)
    base = dataclasses.asdict(default) if name == default.name else {}
    return build_dataclass(chooser(name), {**base, **value}, where)


def parse_override(text: str, short_keys: dict[str, str] | None = None
                   ) -> tuple[list[str], Any]:
    """``a.b=value`` -> (["a", "b"], value parsed as YAML); ``short_keys`` expands everyday
    unqualified keys (``lr`` -> ``train.lr``)."""
    if "=" not in text:
        raise ConfigError(f"--set expects key=value, got '{text}'")
    key, raw = text.split("=", 1)
    key = (short_keys or {}).get(key.strip(), key.strip())
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as err:
        reason = str(err).splitlines()[0]
        raise ConfigError(f"--set {key}: cannot parse value '{raw}' ({reason})") from None
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
        loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not a YAML file (not UTF-8 text)") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {str(err).splitlines()[0]}") from None
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    return loaded
