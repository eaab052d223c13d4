"""KL-regularised autoencoder: MONAI's ``AutoencoderKL`` plus the latent statistics for diffusion.

``encode`` maps ``(B, C, *size)`` in [-1, 1] to a latent mean and std of shape
``(B, latent_channels, *size / 2**(levels-1))``; ``decode`` maps back. ``latent_scale`` (a buffer,
saved with the weights) is ``1 / std`` of training latents, so ``z * latent_scale`` has unit variance
as latent diffusion expects.

Sampling the VAE alone (:meth:`VAE.sample_latent`) draws from a Gaussian fitted to the training
latents (``prior_mean``, ``prior_std`` and, with ``vae.prior_rank > 0``, ``prior_basis``: buffers saved
with the weights), rather than from ``N(0, 1)``: with the weak KL term that keeps reconstructions
sharp, the posterior is far from the standard normal, and ``N(0, 1)`` latents decode to texture, not
anatomy (ex-post density estimation: Ghosh et al., "From variational to deterministic autoencoders",
ICLR 2020). Voxel by voxel (``prior_rank`` 0) the latent of a sample varies independently at every
latent voxel; with ``prior_rank`` k it is the mean plus a Gaussian mix of the k leading principal
components of the training latents (what varies together between subjects: head size, ventricles,
contrast) plus the per-voxel variance they leave (probabilistic PCA, Tipping & Bishop 1999).
Before training sets them they are 0 and 1, the standard normal prior.

With ``mean_image`` the autoencoder codes the residual ``x - mean`` around the average training
image (a buffer the engine sets from the data): reconstructions and samples start as the average
anatomy and training adds the subject's detail, so a model trained for minutes on aligned data is
not a blur.
"""

from __future__ import annotations

import math

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
        latent = [v.latent_channels, *[max(1, s // self.downsampling) for s in cfg.size]]
        self.register_buffer("prior_mean", torch.zeros(1, *latent))
        self.register_buffer("prior_std", torch.ones(1, *latent))
        self.register_buffer("prior_basis", torch.zeros(v.prior_rank, math.prod(latent)) if v.prior_rank else None)
        self.register_buffer("mean_image", torch.zeros(1, cfg.in_channels, *cfg.size) if v.mean_image else None)
        if v.mean_image:  # the decoder's last convolution starts at zero: the first output is the mean image
            last = [m for m in self.net.decoder.modules() if isinstance(m, (nn.Conv2d, nn.Conv3d))][-1]
            nn.init.zeros_(last.weight)
            nn.init.zeros_(last.bias)

    def _mean(self, x: torch.Tensor) -> torch.Tensor | float:
        if self.mean_image is None:
            return 0.0
        if tuple(x.shape[2:]) != tuple(self.mean_image.shape[2:]):
            raise ValueError(f"this VAE codes residuals around its {tuple(self.mean_image.shape[2:])} mean image; "
                             f"got a {tuple(x.shape[2:])} volume")
        return self.mean_image

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Reconstruction, latent mean and latent std of ``x`` ``(B, C, *size)``."""
        mean = self._mean(x)
        recon, mu, sigma = self.net(x - mean)
        return recon + mean, mu, sigma

    def encode(self, x: torch.Tensor, sample: bool = False) -> torch.Tensor:
        """Scaled latent of ``x``: the mean (or a sample) times ``latent_scale``."""
        mu, sigma = self.net.encode(x - self._mean(x))
        z = self.net.sampling(mu, sigma) if sample else mu
        return z * self.latent_scale

    def sample_latent(self, generator: torch.Generator) -> torch.Tensor:
        """One scaled latent ``(1, latent_channels, *size / downsampling)`` from the fitted prior
        (:meth:`decode` turns it into an image)."""
        eps = torch.randn(self.prior_mean.shape, generator=generator).to(self.prior_mean.device)
        z = self.prior_mean + self.prior_std * eps
        if self.prior_basis is not None:
            k = torch.randn(1, self.prior_basis.shape[0], generator=generator).to(self.prior_basis.device)
            z = z + (k @ self.prior_basis).view_as(z)
        return z * self.latent_scale

    @torch.no_grad()
    def fit_prior(self, latents: list[torch.Tensor]) -> None:
        """Set ``prior_mean``/``prior_std`` from unscaled training latent means ``(1, c, ...)`` each.

        Latents of another grid than the prior's give per-channel statistics instead (and no basis).
        With ``prior_basis`` its rows are the leading principal directions of the latents, each scaled
        by its standard deviation, and ``prior_std`` holds the per-voxel variance they leave.
        """
        z = torch.cat(latents)
        if tuple(z.shape[1:]) == tuple(self.prior_mean.shape[1:]):
            mean = z.mean(0, keepdim=True)
            std = z.std(0, keepdim=True) if len(z) > 1 else torch.ones_like(mean)
            if self.prior_basis is not None and len(z) > 1:
                centred = (z - mean).flatten(1).double()
                _, sv, vh = torch.linalg.svd(centred, full_matrices=False)
                k = min(self.prior_basis.shape[0], len(z) - 1)
                basis = vh[:k] * (sv[:k, None] / math.sqrt(len(z) - 1))
                self.prior_basis.zero_()
                self.prior_basis[:k] = basis.float()
                rest = (std.pow(2).flatten() - basis.pow(2).sum(0).float()).clamp_min(0.0)
                std = rest.sqrt().view_as(std)
        else:
            dims = [0, *range(2, z.ndim)]
            mean = z.mean(dims, keepdim=True).expand_as(self.prior_mean)
            std = z.std(dims, keepdim=True).expand_as(self.prior_mean)
        self.prior_mean.copy_(mean)
        self.prior_std.copy_(std.clamp_min(1e-4))

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Image in [-1, 1] range from a scaled latent (inverse of :meth:`encode`)."""
        y = self.net.decode(z / self.latent_scale)
        return y + self._mean(y)


def kl_loss(mu: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """KL divergence of ``N(mu, sigma²)`` from ``N(0, 1)``, summed over latent voxels, batch mean."""
    kl = 0.5 * (mu.pow(2) + sigma.pow(2) - torch.log(sigma.pow(2) + 1e-8) - 1)
    return kl.flatten(1).sum(1).mean()
