"""Sample quality of generative models on MONAI metrics: MMD to real data, MS-SSIM diversity.

- :func:`mmd`: unbiased maximum mean discrepancy between real and generated volumes (MONAI
  ``MMDMetric``); 0 when the two sets match, lower is better.
- :func:`ms_ssim_diversity`: mean pairwise MS-SSIM among generated volumes (MONAI
  ``MultiScaleSSIMMetric``); lower means more diverse samples (1 = all identical, mode collapse).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import torch
from monai.metrics import MMDMetric, MultiScaleSSIMMetric


def _stack(volumes: Sequence[torch.Tensor] | torch.Tensor) -> torch.Tensor:
    if isinstance(volumes, torch.Tensor):
        return volumes.float()
    return torch.stack([torch.as_tensor(v).float() for v in volumes])


def mmd(real: Sequence[torch.Tensor] | torch.Tensor, fake: Sequence[torch.Tensor] | torch.Tensor) -> float:
    """MMD between ``real`` and ``fake`` (each ``(N, C, *spatial)`` or a list of ``(C, *spatial)``,
    N >= 2 and equal shapes; use the same intensity range for both, e.g. the model's [-1, 1])."""
    r, f = _stack(real), _stack(fake)
    n = min(r.shape[0], f.shape[0])
    return float(MMDMetric()(r[:n], f[:n]).mean())


def ms_ssim_diversity(samples: Sequence[torch.Tensor] | torch.Tensor, data_range: float = 2.0,
                      kernel_size: int = 5, scales: int = 3) -> float:
    """Mean MS-SSIM over all pairs of ``samples`` (``(N, C, *spatial)``, N >= 2, values spanning
    ``data_range``); ``scales`` levels of 2x downsampling, so each size must exceed
    ``(kernel_size - 1) * 2**(scales - 1)``."""
    x = _stack(samples)
    metric = MultiScaleSSIMMetric(spatial_dims=x.ndim - 2, data_range=data_range, kernel_size=kernel_size,
                                  weights=[1.0 / scales] * scales)
    pairs = list(itertools.combinations(range(x.shape[0]), 2))
    values = [float(metric(x[i : i + 1], x[j : j + 1]).mean()) for i, j in pairs]
    return sum(values) / len(values)
