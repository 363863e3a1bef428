"""The noise lab: injected noise with ground truth, noise scores, detection quality."""

from denoiserec.noise.inject import STRATEGIES, NoiseConfig, inject

__all__ = ["STRATEGIES", "NoiseConfig", "inject"]
