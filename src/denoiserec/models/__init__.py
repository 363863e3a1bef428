"""Models: one file each, registered by name in :mod:`denoiserec.models.registry`."""

from denoiserec.models import bert4rec, end4rec, fmlp, gru4rec, mgsd_wss, msdccl, sasrec  # noqa: F401  (registers the models)
from denoiserec.models.base import ModelOutput, SequentialRecommender
from denoiserec.models.registry import (
    MODELS,
    build_model,
    model_class,
    model_config_class,
    register,
)

__all__ = [
    "MODELS",
    "ModelOutput",
    "SequentialRecommender",
    "build_model",
    "model_class",
    "model_config_class",
    "register",
]
