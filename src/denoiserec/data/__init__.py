"""The data stage: readers -> RawLog -> preprocessing -> Interactions -> batches."""

from denoiserec.data.datasets import KNOWN, data_dir, load_dataset, read_raw
from denoiserec.data.log import Interactions, RawLog
from denoiserec.data.preprocess import build_interactions
from denoiserec.data.synthetic import SyntheticConfig, generate

__all__ = [
    "KNOWN",
    "Interactions",
    "RawLog",
    "SyntheticConfig",
    "build_interactions",
    "data_dir",
    "generate",
    "load_dataset",
    "read_raw",
]
