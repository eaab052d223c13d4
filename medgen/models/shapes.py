"""Sizes a network can take: round up to its downsampling factor, pad/crop volumes to fit.

A UNet or autoencoder with ``n`` downsamplings needs every spatial size divisible by ``2**n``. medgen
never refuses an odd size: data are zero-padded (background) or centre-cropped to the model size,
and outputs are cropped back.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from monai.transforms import ResizeWithPadOrCrop


def round_up(size: Sequence[int], multiple: int) -> list[int]:
    """Each entry of ``size`` rounded up to a multiple of ``multiple``."""
    return [int(-(-s // multiple) * multiple) for s in size]


def fit(x: torch.Tensor, size: Sequence[int], pad_value: float = 0.0) -> torch.Tensor:
    """Centre pad (with ``pad_value``) or crop ``x`` ``(C, *spatial)`` to ``(C, *size)``."""
    if list(x.shape[1:]) == list(size):
        return x
    return ResizeWithPadOrCrop(spatial_size=list(size), mode="constant", value=pad_value)(x)


def fit_batch(x: torch.Tensor, size: Sequence[int], pad_value: float = 0.0) -> torch.Tensor:
    """Batched :func:`fit`: ``(B, C, *spatial)`` → ``(B, C, *size)``."""
    if list(x.shape[2:]) == list(size):
        return x
    return torch.stack([torch.as_tensor(fit(v, size, pad_value)) for v in x])
