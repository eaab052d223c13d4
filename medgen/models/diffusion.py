"""Denoising network for pixel-space and latent diffusion: MONAI's ``DiffusionModelUNet``.

``forward(x, t, cond)`` takes a noisy ``(B, C, *size)`` sample, integer timesteps ``(B,)`` in
``[0, num_train_timesteps)`` and, for conditional models, a vector ``cond`` ``(B, cond_dim)`` (class
one-hot or scalars). The condition enters the timestep embedding through a linear layer; an extra
"present" input lets the same network learn the unconditional model (``cond=None``) for
classifier-free guidance.

With ``diffusion.label_classes`` a MONAI ``ControlNet`` (same levels as the UNet, trained with it) reads
a one-hot label map ``labels`` ``(B, K, *size)`` at full resolution and adds its features to the
UNet's skip connections, so every denoising step follows the label map (label-map → image,
lesion inpainting).

With ``mean_image`` the network works on residuals around the average training image:
:meth:`DiffusionNet.to_residual` maps model-range images ``(B, C, *size)`` to ``(x - mean) / scale``
and :meth:`DiffusionNet.from_residual` back (both buffers are saved with the weights and set from
the training data by the engine); without it both are the identity. In latent diffusion the same
buffers hold the mean training latent and the latent residuals' std (``size``: the latent size).
"""

from __future__ import annotations

import torch
from monai.networks.nets import ControlNet, DiffusionModelUNet
from torch import nn

from medgen.models.config import ModelConfig


class DiffusionNet(nn.Module):
    """Noise (epsilon) or velocity (rectified flow) predictor ``(B, C, *size) → (B, C, *size)``."""

    def __init__(self, cfg: ModelConfig, in_channels: int | None = None, size: list[int] | None = None) -> None:
        super().__init__()
        d = cfg.diffusion
        channels = in_channels or cfg.in_channels
        levels = len(d.channels)
        self.cond_dim, self.label_classes = d.cond_dim, d.label_classes
        shared = dict(
            spatial_dims=cfg.spatial_dims, in_channels=channels, channels=list(d.channels),
            attention_levels=list(d.attention), num_res_blocks=[d.num_res_blocks] * levels,
            norm_num_groups=d.norm_num_groups, num_head_channels=d.num_head_channels,
            num_class_embeds=1 if d.cond_dim else None,
        )
        self.unet = DiffusionModelUNet(out_channels=channels, **shared)
        self.control = None
        if d.label_classes:
            self.control = ControlNet(conditioning_embedding_in_channels=d.label_classes,
                                      conditioning_embedding_num_channels=[d.channels[0]], **shared)
        if d.cond_dim:
            # A vector condition instead of MONAI's class lookup: same place in the network.
            self.unet.class_embedding = nn.Linear(d.cond_dim + 1, d.channels[0] * 4)
            if self.control is not None:
                self.control.class_embedding = nn.Linear(d.cond_dim + 1, d.channels[0] * 4)
        self.downsampling = 2 ** (levels - 1)
        self.register_buffer("mean_image", torch.zeros(1, channels, *(size or cfg.size)) if d.mean_image else None)
        self.register_buffer("residual_scale", torch.ones(()) if d.mean_image else None)

    def to_residual(self, x: torch.Tensor) -> torch.Tensor:
        """Model-range image → the space the network diffuses (identity without ``mean_image``)."""
        return x if self.mean_image is None else (x - self.mean_image) / self.residual_scale

    def from_residual(self, y: torch.Tensor) -> torch.Tensor:
        """Inverse of :meth:`to_residual`."""
        return y if self.mean_image is None else y * self.residual_scale + self.mean_image

    def forward(
        self, x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor | None = None, drop: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """``drop`` ``(B,)`` bool: rows whose condition is hidden (classifier-free guidance training).
        ``labels`` ``(B, label_classes, *size)``: one-hot label map, required by a label-conditioned net."""
        full = None
        if self.cond_dim:
            full = torch.zeros(x.shape[0], self.cond_dim + 1, device=x.device, dtype=x.dtype)
            if cond is not None:
                full[:, :-1] = cond.to(x.dtype)
                full[:, -1] = 1.0
                if drop is not None:
                    full = full * (~drop).to(x.dtype)[:, None]
        if self.control is None:
            return self.unet(x, t, class_labels=full)
        if labels is None or labels.shape[1] != self.label_classes:
            raise ValueError(f"this diffusion model is conditioned on a one-hot label map of {self.label_classes} "
                             "classes (labels=(B, K, *size))")
        down, mid = self.control(x, t, controlnet_cond=labels.to(x.dtype), class_labels=full)
        return self.unet(x, t, class_labels=full, down_block_additional_residuals=down,
                         mid_block_additional_residual=mid)
