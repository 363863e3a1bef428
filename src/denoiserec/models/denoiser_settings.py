"""The settings every denoiser built around a registered backbone shares (MSDCCL, MGSD-WSS).

Such a denoiser recommends through a registered model's own encoder (``backbone``: that
model's settings, its width the denoiser's width H), runs small Transformer encoders of its own
(``n_layers`` blocks of ``n_heads`` heads, feed-forward ``inner_size``), and anneals a Gumbel
gate's and a contrastive loss's temperatures over training (``nn.schedules``). A denoiser's
config class derives from :class:`DenoiserSettings` and may change the defaults.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from denoiserec.config import check_choice, check_range
from denoiserec.errors import ConfigError
from denoiserec.models.bert4rec import BERT4RecConfig
from denoiserec.models.registry import model_class, model_config_class
from denoiserec.nn.schedules import ANNEALING, TemperatureSchedule
from denoiserec.nn.transformer import TransformerEncoder

BACKBONES = ("bert4rec", "sasrec", "gru4rec")


@dataclass(frozen=True)
class DenoiserSettings:
    """A backbone denoiser's shared settings (see the module docstring)."""

    name: str = ""
    backbone: Any = field(default_factory=lambda: BERT4RecConfig(
        hidden_size=100, inner_size=100), metadata={"config_class": model_config_class})
    """The recommender the denoiser feeds: a registered model's own settings (``name``:
    bert4rec, sasrec or gru4rec). Its embedding width is the denoiser's width H."""
    n_layers: int = 2
    """Blocks of the denoiser's own Transformer encoders."""
    n_heads: int = 2
    """Attention heads of the denoiser's own encoders (H must be a multiple)."""
    inner_size: int = 256
    """Feed-forward width of the denoiser's own encoders."""
    gumbel_temperature: float = 0.5
    """Initial Gumbel-softmax temperature tau_g of the keep gate."""
    gumbel_temperature_floor: float = 0.1
    """Lowest tau_g (reference 1e-3: the straight-through gradient scales as 1/tau)."""
    contrastive_temperature: float = 0.5
    """Initial contrastive temperature tau_cl."""
    contrastive_temperature_floor: float = 0.1
    """Lowest tau_cl."""
    temperature_annealing: str = "exponential"
    """exponential (the floors after ``anneal_epochs``) | reference (compounding per 40
    batches, MSDCCL spec §4.3) | none."""
    anneal_epochs: float = 30.0
    """Epochs after which exponential annealing reaches the floors."""
    layer_norm_eps: float = 1e-12
    """LayerNorm epsilon inside the denoiser's Transformer encoders."""

    def __post_init__(self) -> None:
        check_choice("model.backbone.name", self.backbone.name, BACKBONES)
        check_choice("model.temperature_annealing", self.temperature_annealing, ANNEALING)
        for key in ("n_layers", "n_heads", "inner_size"):
            check_range(f"model.{key}", getattr(self, key), 1)
        for key in ("gumbel_temperature", "gumbel_temperature_floor", "contrastive_temperature",
                    "contrastive_temperature_floor", "anneal_epochs", "layer_norm_eps"):
            check_range(f"model.{key}", getattr(self, key), 0, low_open=True)
        if self.width % self.n_heads:
            raise ConfigError(f"the backbone's width ({self.width}) must be a multiple of "
                              f"model.n_heads ({self.n_heads})")

    @property
    def width(self) -> int:
        """H: the backbone's embedding width, shared by every part of the denoiser."""
        return model_class(self.backbone.name).embedding_size(self.backbone)

    def temperature_schedule(self) -> TemperatureSchedule:
        """The gate's and the contrastive loss's temperatures over training."""
        return TemperatureSchedule(
            (self.gumbel_temperature, self.gumbel_temperature_floor),
            (self.contrastive_temperature, self.contrastive_temperature_floor),
            self.anneal_epochs, self.temperature_annealing)

    def own_encoder(self, dropout: float, attention_dropout: float) -> TransformerEncoder:
        """One of the denoiser's own causal-capable Transformer encoders (ReLU, post-LN)."""
        return TransformerEncoder(self.n_layers, self.width, self.n_heads, self.inner_size,
                                  dropout, attention_dropout, "relu", self.layer_norm_eps)
