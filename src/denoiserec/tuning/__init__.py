"""Hyper-parameter search on Optuna (``denoiserec tune``): a YAML search space, TPE, pruning
on the per-epoch valid metric, every trial an ordinary run directory."""

from denoiserec.tuning.space import TuneSpec, load_spec
from denoiserec.tuning.study import TuneJob, tune

__all__ = ["TuneJob", "TuneSpec", "load_spec", "tune"]
