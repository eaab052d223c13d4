"""Build the networks of a model family from its config, and the size they need."""

from __future__ import annotations

from torch import nn

from medgen.models.config import ModelConfig
from medgen.models.diffusion import DiffusionNet
from medgen.models.gan import Generator
from medgen.models.vae import VAE


def size_multiple(cfg: ModelConfig, vae_cfg: ModelConfig | None = None) -> int:
    """Every spatial size of ``cfg`` must be a multiple of this (the network's total downsampling)."""
    if cfg.family == "vae":
        return 2 ** (len(cfg.vae.channels) - 1)
    if cfg.family == "gan":
        return 2 ** (len(cfg.gan.channels) - 1)
    unet = 2 ** (len(cfg.diffusion.channels) - 1)
    if cfg.family == "ldm":
        vae = vae_cfg if vae_cfg is not None else cfg
        return unet * 2 ** (len(vae.vae.channels) - 1)
    return unet


def build_network(cfg: ModelConfig, vae_cfg: ModelConfig | None = None) -> nn.Module:
    """The network a finished model samples with: ``VAE``, ``Generator`` or ``DiffusionNet``.

    For ``ldm`` the diffusion net works on ``vae_cfg.vae.latent_channels`` channels.
    """
    if cfg.family == "vae":
        return VAE(cfg)
    if cfg.family == "gan":
        return Generator(cfg)
    if cfg.family == "ldm":
        if vae_cfg is None:
            raise ValueError("latent diffusion needs the VAE's config")
        return DiffusionNet(cfg, in_channels=vae_cfg.vae.latent_channels)
    return DiffusionNet(cfg)
