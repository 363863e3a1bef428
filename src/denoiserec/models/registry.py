"""The one name -> model table. Adding a model = one file with ``@register`` + one import."""

from __future__ import annotations

import difflib
from typing import Any

from denoiserec.errors import ConfigError
from denoiserec.models.base import SequentialRecommender

MODELS: dict[str, type[SequentialRecommender]] = {}


def register(cls: type[SequentialRecommender]) -> type[SequentialRecommender]:
    """Class decorator adding a model to the registry; a duplicate name is an error."""
    if not cls.name:
        raise ValueError(f"{cls.__name__} has no registry name")
    if cls.name in MODELS:
        raise ValueError(f"model name '{cls.name}' is already registered by "
                         f"{MODELS[cls.name].__name__}")
    MODELS[cls.name] = cls
    return cls


def model_class(name: str) -> type[SequentialRecommender]:
    if name not in MODELS:
        close = difflib.get_close_matches(name, list(MODELS), n=1)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        raise ConfigError(f"unknown model '{name}'{hint} (available: {', '.join(sorted(MODELS))})")
    return MODELS[name]


def model_config_class(name: str) -> type:
    return model_class(name).config_class


def build_model(config: Any, n_items: int, max_len: int) -> SequentialRecommender:
    """Instantiate the model named by ``config.name`` for a catalogue of ``n_items`` items."""
    return model_class(config.name)(config, n_items=n_items, max_len=max_len)
