"""The 3D feature network behind medgen's FID and MMD (:mod:`medgen.evaluate.features` uses it).

A plain ``nn.Module`` with every size an argument; its shipped weights (``features_ssl3d``,
self-supervised on the built-in cohort by ``scripts/train_features.py``) are a model folder
(:mod:`medgen.models.task_network`).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from monai.networks.blocks import Convolution
from torch import nn


class FeatureNet3d(nn.Module):
    """Small 3D CNN encoder: ``(B, 1, X, Y, Z)`` in [0, 1] → ``(B, channels[-1])`` features.

    Each stage is a stride-2 3x3x3 convolution then a stride-1 one (batch norm, leaky ReLU); the
    last feature map is averaged over space. Batch norm, not group/instance norm: per-sample
    normalisation would divide out exactly the global contrast and noise level that image-quality
    features must see. Pretext-task heads (used only in training) live outside the network.
    """

    def __init__(self, channels: Sequence[int] = (16, 32, 64, 128)) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c_in = 1
        for c in channels:
            layers.append(Convolution(3, c_in, c, strides=2, kernel_size=3, act="leakyrelu", norm="batch"))
            layers.append(Convolution(3, c, c, strides=1, kernel_size=3, act="leakyrelu", norm="batch"))
            c_in = c
        self.encoder = nn.Sequential(*layers)
        self.out_features = int(channels[-1])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x).mean(dim=(2, 3, 4))
