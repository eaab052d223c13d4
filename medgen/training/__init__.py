"""One training engine for medgen's VAE, GAN and diffusion models (CPU, GPU, multi-GPU via torchrun).

>>> from medgen.training import load_config, train
>>> result = train(load_config("configs/brain3mm_vae.yaml"), "runs/vae")   # doctest: +SKIP
"""

from medgen.training.config import DataConfig, LossConfig, RunConfig, TrainConfig, load_config, parse_config
from medgen.training.engine import TrainResult, train

__all__ = ["RunConfig", "DataConfig", "TrainConfig", "LossConfig", "load_config", "parse_config", "train",
           "TrainResult"]
