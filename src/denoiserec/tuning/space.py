"""A search space for ``denoiserec tune``, read from YAML and checked before anything trains.

A tune file::

    trials: 30                  # trials in the study, all workers together
    sampler: {startup_trials: 10, seed: 0}
    pruner: {kind: median, startup_trials: 5, warmup_epochs: 5}
    space:
      train.lr: {low: 1.0e-4, high: 1.0e-2, log: true}         # a float range, log scale
      model.hidden_dropout: {low: 0.0, high: 0.5, step: 0.1}   # a float range on a grid
      model.n_layers: {low: 1, high: 3, type: int}             # an integer range
      train.weight_decay: {choices: [0.0, 1.0e-4, 1.0e-3]}     # a choice

Every key of ``space`` is a setting of the run (dotted, as ``--set`` takes it, or an everyday
short key); each range's ends and each choice are loaded into the run's configuration at load
time, so a key or a value the run would refuse is a one-line error before the study starts.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from denoiserec.config import build_dataclass, check_choice, check_range, read_yaml
from denoiserec.errors import ConfigError
from denoiserec.runconfig import RunConfig, load_config

PRESETS = Path(__file__).parent / "presets"
PRUNERS = ("median", "none")
PARAM_TYPES = ("float", "int")


@dataclass(frozen=True)
class SamplerSettings:
    """Optuna's TPE sampler."""

    startup_trials: int = 10
    """Trials drawn at random before TPE models the results (Optuna's ``n_startup_trials``)."""
    seed: int = 0
    """Seed of the sampler; each trial's draw is seeded from (seed, the worker's ``--worker``
    number, trials in the study so far), so that workers and restarts differ."""

    def __post_init__(self) -> None:
        check_range("sampler.startup_trials", self.startup_trials, 0)
        check_range("sampler.seed", self.seed, 0)


@dataclass(frozen=True)
class PrunerSettings:
    """Pruning on the valid selection value reported after every epoch."""

    kind: str = "median"
    """``median`` (stop a trial below the median of earlier trials at the same epoch) or
    ``none``."""
    startup_trials: int = 5
    """Trials that finish before any is pruned."""
    warmup_epochs: int = 5
    """Epochs of a trial before it may be pruned."""

    def __post_init__(self) -> None:
        check_choice("pruner.kind", self.kind, PRUNERS)
        check_range("pruner.startup_trials", self.startup_trials, 0)
        check_range("pruner.warmup_epochs", self.warmup_epochs, 0)


@dataclass(frozen=True)
class Param:
    """One searched setting: a range (``low``..``high``, optionally ``log`` or on a ``step``
    grid, ``type`` float or int) or a list of ``choices``."""

    key: str
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    type: str = "float"
    choices: tuple[Any, ...] | None = None

    def __post_init__(self) -> None:
        where = f"space.{self.key}"
        if self.choices is not None:
            if self.low is not None or self.high is not None or self.log or self.step:
                raise ConfigError(f"{where}: give choices or a range (low, high), not both")
            if not self.choices:
                raise ConfigError(f"{where}: choices lists nothing")
            return
        if self.low is None or self.high is None:
            raise ConfigError(f"{where}: give low and high (a range) or choices")
        if self.step is not None and not self.step > 0:
            raise ConfigError(f"{where}: step must be above 0, got {self.step:g}")
        check_choice(f"{where}.type", self.type, PARAM_TYPES)
        if self.low >= self.high:
            raise ConfigError(f"{where}: low ({self.low:g}) must be below high ({self.high:g})")
        if self.log and self.low <= 0:
            raise ConfigError(f"{where}: a log range needs low > 0, got {self.low:g}")
        if self.log and self.step:
            raise ConfigError(f"{where}: log and step exclude each other (Optuna)")
        if self.type == "int" and not all(float(v).is_integer()
                                          for v in (self.low, self.high, self.step or 1)):
            raise ConfigError(f"{where}: an int range needs whole low, high and step")

    def values_to_check(self) -> list[Any]:
        """The values whose loading proves the setting valid: the ends or every choice."""
        if self.choices is not None:
            return list(self.choices)
        cast = int if self.type == "int" else float
        return [cast(self.low), cast(self.high)]

    def suggest(self, trial: Any) -> Any:
        """The value of this setting for an Optuna ``trial``."""
        if self.choices is not None:
            return trial.suggest_categorical(self.key, list(self.choices))
        if self.type == "int":
            return trial.suggest_int(self.key, int(self.low), int(self.high),
                                     step=int(self.step or 1), log=self.log)
        return trial.suggest_float(self.key, self.low, self.high, step=self.step, log=self.log)


@dataclass(frozen=True)
class TuneSpec:
    """A study: how many trials, the sampler, the pruner and the searched settings."""

    trials: int = 30
    """Trials in the study, all workers together (complete, pruned and running ones)."""
    sampler: SamplerSettings = field(default_factory=SamplerSettings)
    pruner: PrunerSettings = field(default_factory=PrunerSettings)
    space: tuple[Param, ...] = ()

    def __post_init__(self) -> None:
        check_range("trials", self.trials, 1)
        if not self.space:
            raise ConfigError("space lists no setting to search")

    def to_dict(self) -> dict[str, Any]:
        space = {}
        for p in self.space:
            space[p.key] = ({"choices": list(p.choices)} if p.choices is not None else
                            {"low": p.low, "high": p.high, "log": p.log, "step": p.step,
                             "type": p.type})
        return {"trials": self.trials, "sampler": vars(self.sampler),
                "pruner": vars(self.pruner), "space": space}

    def digest(self) -> str:
        """What a study's results depend on in the spec (the trial count may grow)."""
        searched = {k: v for k, v in self.to_dict().items() if k != "trials"}
        return hashlib.sha256(json.dumps(searched, sort_keys=True).encode()).hexdigest()


def _param(key: str, raw: Any) -> Param:
    if not isinstance(raw, dict):
        raise ConfigError(f"space.{key}: expected a mapping (low/high/log/step/type or "
                          f"choices), got {raw!r}")
    return build_dataclass(Param, {"key": key, **raw}, f"space.{key}")


def parse_spec(raw: dict[str, Any], where: str) -> TuneSpec:
    """A :class:`TuneSpec` from a mapping (a tune file's content); errors name ``where``."""
    raw = dict(raw)
    for section in ("sampler", "pruner"):
        if not isinstance(raw.get(section, {}), dict):
            raise ConfigError(f"{where}: expected a '{section}' mapping, got {raw[section]!r}")
    space = raw.pop("space", None)
    if not isinstance(space, dict):
        raise ConfigError(f"{where}: expected a 'space' mapping of settings to search")
    try:
        params = tuple(_param(str(key), value) for key, value in space.items())
        return build_dataclass(TuneSpec, {**raw, "space": params}, "tune")
    except ConfigError as err:
        raise ConfigError(f"{where}: {err}") from None


def preset_names() -> list[str]:
    return sorted(p.stem for p in PRESETS.glob("*.yaml"))


def load_spec(path_or_preset: str | Path) -> TuneSpec:
    """A tune file, or a preset by name (``denoiserec tune --preset``: see ``presets/``)."""
    path = Path(path_or_preset)
    if not path.suffix and not path.exists():
        if str(path_or_preset) not in preset_names():
            raise ConfigError(f"no tune file or preset '{path_or_preset}'; presets: "
                              f"{', '.join(preset_names())}")
        path = PRESETS / f"{path_or_preset}.yaml"
    return parse_spec(read_yaml(path), str(path))


def setting(key: str, value: Any) -> str:
    """``key=value`` as ``--set`` reads it back exactly: YAML's own spelling (JSON's ``1e-05``
    is a string to YAML 1.1, which wants ``1.0e-05``)."""
    text = yaml.safe_dump(value, default_flow_style=True, width=2**20)
    return f"{key}={text.removesuffix(chr(10)).removesuffix(chr(10) + '...').strip()}"


def trial_overrides(spec: TuneSpec, params: dict[str, Any]) -> list[str]:
    """``--set`` overrides of a trial's sampled values."""
    return [setting(p.key, params[p.key]) for p in spec.space]


def check_space(spec: TuneSpec, config: str | Path | None, overrides: list[str]) -> RunConfig:
    """Load the base configuration with each range end and each choice of every searched
    setting: a key or value a run would refuse fails here, naming the setting. Returns the
    base configuration."""
    base = load_config(config, overrides)
    for param in spec.space:
        for value in param.values_to_check():
            try:
                load_config(config, [*overrides, setting(param.key, value)])
            except ConfigError as err:
                raise ConfigError(f"space.{param.key} = {value!r}: {err}") from None
    return base
