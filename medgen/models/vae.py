"""KL-regularised autoencoder: MONAI's ``AutoencoderKL`` plus the latent statistics for diffusion.

``encode`` maps ``(B, C, *size)`` in [-1, 1] to a latent mean and std of shape
``(B, latent_channels, *size / 2**(levels-1))``; ``decode`` maps back. ``latent_scale`` (a buffer,
saved with the weights) is ``1 / std`` of training latents, so ``z * latent_scale`` has unit variance
as latent diffusion expects.
"""

from __future__ import annotations

import torch
from monai.networks.nets import AutoencoderKL
from torch import nn

from medgen.models.config import ModelConfig


class VAE(nn.Module):
    """3D (or 2D) KL autoencoder configured by :class:`~medgen.models.config.ModelConfig`."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        v = cfg.vae
        levels = len(v.channels)
        self.net = AutoencoderKL(
            spatial_dims=cfg.spatial_dims, in_channels=cfg.in_channels, out_channels=cfg.in_channels,
            channels=list(v.channels), num_res_blocks=[v.num_res_blocks] * levels,
            attention_levels=[False] * (levels - 1) + [v.attention], latent_channels=v.latent_channels,
            norm_num_groups=v.norm_num_groups, with_encoder_nonlocal_attn=v.attention,
            with_decoder_nonlocal_attn=v.attention,
        )
        self.downsampling = 2 ** (levels - 1)
        self.register_buffer("latent_scale", torch.ones(()))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Reconstruction, latent mean and latent std of ``x`` ``(B, C, *size)``."""
        return self.net(x)

    def encode(self, x: torch.Tensor, sample: bool = False) -> torch.Tensor:
        """Scaled latent of ``x``: the mean (or a sample) times ``latent_scale``."""
        mu, sigma = self.net.encode(x)
        z = self.net.sampling(mu, sigma) if sample else mu
        return z * self.latent_scale

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Image in [-1, 1] range from a scaled latent (inverse of :meth:`encode`)."""
        return self.net.decode(z / self.latent_scale)


def kl_loss(mu: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """KL divergence of ``N(mu, sigma²)`` from ``N(0, 1)``, summed over latent voxels, batch mean."""
    kl = 0.5 * (mu.pow(2) + sigma.pow(2) - torch.log(sigma.pow(2) + 1e-8) - 1)
    return kl.flatten(1).sum(1).mean()
