"""GAN networks: a whole-volume generator (one forward pass per volume) and a patch discriminator.

The generator maps a latent vector ``z`` ``(B, latent_dim)`` to ``(B, C, *size)`` in [-1, 1]: a
linear layer makes a ``size / 2**n`` seed volume, then ``n`` blocks of (tri)linear upsampling,
convolution, normalisation and LeakyReLU (linear, not nearest-neighbour, upsampling: nearest leaves
the stripes and blocks of a 3D checkerboard in the samples). With ``label_classes > 0`` each
normalisation is MONAI's SPADE block, modulated by the one-hot label map
``(B, label_classes, *size)`` (GauGAN-style), so the generated anatomy follows the labels.

With ``mean_image`` a fixed full-size image (a buffer, saved with the weights) is added before the
``tanh`` and the last convolution starts at zero: training starts from the average anatomy (the
engine sets it from the training data) and the convolutions learn the variation. It is not learned:
Adam moves every voxel of a learned image by about the learning rate per step whatever its gradient,
which leaves salt-and-pepper noise in every sample.

The discriminator is MONAI's ``PatchDiscriminator`` with spectral normalisation on every
convolution (stable with the hinge loss).
"""

from __future__ import annotations

import math

import torch
from monai.networks.blocks import SPADE
from monai.networks.nets import PatchDiscriminator
from torch import nn

from medgen.models.config import ModelConfig


class _UpBlock(nn.Module):
    def __init__(self, dims: int, cin: int, cout: int, label_classes: int) -> None:
        super().__init__()
        conv = nn.Conv3d if dims == 3 else nn.Conv2d
        self.up = nn.Upsample(scale_factor=2, mode="trilinear" if dims == 3 else "bilinear", align_corners=False)
        self.conv = conv(cin, cout, 3, padding=1)
        if label_classes:
            self.norm = SPADE(label_classes, cout, spatial_dims=dims, hidden_channels=min(32, 2 * cout),
                              norm="INSTANCE")
        else:
            self.norm = nn.GroupNorm(min(8, cout), cout)
        self.act = nn.LeakyReLU(0.2)

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        x = self.conv(self.up(x))
        x = self.norm(x, labels) if isinstance(self.norm, SPADE) else self.norm(x)
        return self.act(x)


class Generator(nn.Module):
    """Latent vector (+ optional label map) → volume ``(B, C, *size)`` in [-1, 1]."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        g = cfg.gan
        self.latent_dim = g.latent_dim
        self.label_classes = g.label_classes
        self.size = list(cfg.size)
        n_up = len(g.channels) - 1
        self.downsampling = 2**n_up
        self.seed_size = [s // self.downsampling for s in cfg.size]
        self.fc = nn.Linear(g.latent_dim, g.channels[0] * math.prod(self.seed_size))
        self.blocks = nn.ModuleList(
            _UpBlock(cfg.spatial_dims, g.channels[i], g.channels[i + 1], g.label_classes) for i in range(n_up)
        )
        conv = nn.Conv3d if cfg.spatial_dims == 3 else nn.Conv2d
        self.out = conv(g.channels[-1], cfg.in_channels, 3, padding=1)
        self.channels0 = g.channels[0]
        self.register_buffer("mean_image", torch.zeros(1, cfg.in_channels, *cfg.size) if g.mean_image else None)
        if g.mean_image:
            # Zero-initialised last convolution: training starts from the mean image and adds detail.
            nn.init.zeros_(self.out.weight)
            nn.init.zeros_(self.out.bias)

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """``z`` ``(B, latent_dim)``; ``labels`` one-hot ``(B, label_classes, *size)`` if conditional."""
        if self.label_classes and labels is None:
            raise ValueError("this generator is conditional: pass a one-hot label map")
        x = nn.functional.leaky_relu(self.fc(z), 0.2).view(z.shape[0], self.channels0, *self.seed_size)
        for block in self.blocks:
            x = block(x, labels)
        x = self.out(x)
        return torch.tanh(x + self.mean_image if self.mean_image is not None else x)


def build_discriminator(cfg: ModelConfig) -> nn.Module:
    """Patch discriminator over the image (and label map, when conditional), spectrally normalised.

    Input ``(B, C + label_classes, *size)``; output: list of features, the last is the patch logits.
    """
    g = cfg.gan
    disc = PatchDiscriminator(
        spatial_dims=cfg.spatial_dims, channels=g.disc_channels, in_channels=cfg.in_channels + g.label_classes,
        num_layers_d=g.disc_layers, norm=None, bias=True, last_conv_kernel_size=3,
    )
    for module in list(disc.modules()):
        if isinstance(module, (nn.Conv2d, nn.Conv3d)):
            nn.utils.parametrizations.spectral_norm(module)
    return disc
