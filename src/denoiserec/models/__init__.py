"""Models: one file each, registered by name in :mod:`denoiserec.models.registry`."""

from denoiserec.models import (  # noqa: F401  (registers the models)
    bert4rec,
    dcn,
    din,
    end4rec,
    fmlp,
    gru4rec,
    mgsd_wss,
    msdccl,
    sasrec,
    wide_deep,
)
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
