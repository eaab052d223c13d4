"""Build the networks of a model family from its config, and the size they need."""

from __future__ import annotations

import torch
from torch import nn

from medgen.errors import ConfigError
from medgen.models.config import MAX_PARAMETERS, ModelConfig, check_model_config
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

    For ``ldm`` the diffusion net works on ``vae_cfg.vae.latent_channels`` channels at the latent size
    (``model.size`` over the VAE's downsampling); its ``mean_image`` is then the mean training latent.
    """
    if cfg.family == "vae":
        return VAE(cfg)
    if cfg.family == "gan":
        return Generator(cfg)
    if cfg.family == "ldm":
        if vae_cfg is None:
            raise ValueError("latent diffusion needs the VAE's config")
        down = 2 ** (len(vae_cfg.vae.channels) - 1)
        return DiffusionNet(cfg, in_channels=vae_cfg.vae.latent_channels, size=[s // down for s in cfg.size])
    return DiffusionNet(cfg)


def check_network(cfg: ModelConfig, vae_cfg: ModelConfig | None = None, key: str = "model") -> int:
    """Check ``cfg`` and build its network on the meta device (no memory, no random numbers) to bound
    its size before anything real is allocated.

    Returns:
        The number of parameters and buffers of the network.

    Raises:
        ConfigError: naming ``key`` when a value is out of bounds, MONAI refuses the sizes, or the
            network would hold more than :data:`~medgen.models.config.MAX_PARAMETERS` values.
    """
    check_model_config(cfg, key)
    try:
        with torch.device("meta"):
            net = build_network(cfg, vae_cfg)
    except (ValueError, TypeError, AssertionError, RuntimeError) as err:
        problem = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ConfigError(f"key '{key}': this network cannot be built ({problem})") from None
    count = sum(t.numel() for t in (*net.parameters(), *net.buffers()))
    if count > MAX_PARAMETERS:
        section = {"vae": "vae", "gan": "gan"}.get(cfg.family, "diffusion")
        raise ConfigError(
            f"key '{key}.{section}.channels': the network would hold {count / 1e6:,.0f}M parameters and buffers "
            f"({count * 4 / 2**30:,.1f} GiB of float32), over medgen's bound of {MAX_PARAMETERS / 1e6:,.0f}M; "
            f"use fewer or narrower channels or a smaller {key}.size")
    return count
