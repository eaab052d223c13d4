"""Small enhancement networks: a noise-level-conditioned 3D denoiser and a 2D slice SR network.

Both are plain ``nn.Module``s with every size an argument; training and inference live elsewhere
(:mod:`medgen.enhance.self_supervised`, :mod:`medgen.enhance.inference`, ``scripts/``), and their
shipped weights are model folders (:mod:`medgen.models.task_network`).
"""

from __future__ import annotations

import torch
from monai.networks.nets import BasicUNet
from torch import nn

DENOISER_FEATURES = (8, 8, 16, 32, 64, 8)


class Denoiser3d(nn.Module):
    """Residual 3D U-Net denoiser conditioned on the noise level (FFDNet-style).

    The input scan is normalised to roughly ``[0, 1]`` (see :func:`medgen.enhance.denoise.normalise`);
    ``sigma`` is the noise standard deviation in the same normalised units, given to the network as a
    constant second channel so one set of weights covers every noise level. The U-Net predicts the
    noise, which is subtracted from the input.

    Args:
        features: MONAI :class:`~monai.networks.nets.BasicUNet` feature sizes (6 ints).

    Shapes:
        ``x``: ``(B, 1, X, Y, Z)``; ``sigma``: ``(B,)`` or a float; output ``(B, 1, X, Y, Z)``.
        Spatial sizes divisible by 16 avoid padding inside the U-Net.
    """

    def __init__(self, features: tuple[int, ...] = DENOISER_FEATURES) -> None:
        super().__init__()
        self.features = tuple(int(f) for f in features)
        # no normalisation layers: instance/group norm would erase the constant noise-level channel
        # and the absolute intensity scale the noise std is measured in
        self.unet = BasicUNet(spatial_dims=3, in_channels=2, out_channels=1, features=self.features, norm=None)

    def forward(self, x: torch.Tensor, sigma: torch.Tensor | float) -> torch.Tensor:
        sigma_t = torch.as_tensor(sigma, dtype=x.dtype, device=x.device).reshape(-1, 1, 1, 1, 1)
        sigma_map = sigma_t.expand(x.shape[0], 1, *x.shape[2:])
        return x - self.unet(torch.cat([x, sigma_map], dim=1))


class SliceSR2d(nn.Module):
    """EDSR-style residual 2D network that restores detail along one axis of a slice.

    Used by the super-resolution (:mod:`medgen.enhance.superres`): the input is a slice interpolated
    (cubic B-spline) from thick samples along its first axis; the network adds the missing high
    frequencies. The up-sampling ``factor`` enters as a constant second channel (``1 / factor``), so
    one pretrained network serves every factor it was trained on.

    Args:
        channels: feature channels; blocks: residual blocks of two 3x3 convolutions.

    Shapes:
        ``x``: ``(B, 1, H, W)`` → ``(B, 1, H, W)``, any ``H, W``; ``factor``: a float or ``(B,)``.
    """

    def __init__(self, channels: int = 32, blocks: int = 6) -> None:
        super().__init__()
        self.channels, self.blocks = int(channels), int(blocks)
        self.head = nn.Conv2d(2, channels, 3, padding=1)
        self.body = nn.ModuleList(
            nn.Sequential(
                nn.Conv2d(channels, channels, 3, padding=1),
                nn.ReLU(inplace=True),
                nn.Conv2d(channels, channels, 3, padding=1),
            )
            for _ in range(blocks)
        )
        self.tail = nn.Conv2d(channels, 1, 3, padding=1)
        nn.init.zeros_(self.tail.weight)  # start as the identity: never worse than the interpolation
        nn.init.zeros_(self.tail.bias)

    def forward(self, x: torch.Tensor, factor: torch.Tensor | float) -> torch.Tensor:
        inv = 1.0 / torch.as_tensor(factor, dtype=x.dtype, device=x.device).reshape(-1, 1, 1, 1)
        h = self.head(torch.cat([x, inv.expand(x.shape[0], 1, *x.shape[2:])], dim=1))
        feat = h
        for block in self.body:
            feat = feat + 0.5 * block(feat)
        return x + self.tail(feat + h)
