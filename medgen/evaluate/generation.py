"""Sample quality of generative models: feature MMD/FID to real data, MS-SSIM diversity.

- :func:`mmd`: Gaussian-kernel squared MMD between *feature vectors* of real and synthetic volumes
  (the shipped self-supervised 3D network of :mod:`medgen.evaluate.features`, or one you pass).
  Dimensionless, in ``[0, 2]``; 0 when the two sets match, lower is better. Each scan is
  percentile-normalised by itself before feature extraction, so the inputs' units (model range
  [-1, 1], MR arbitrary units, HU) do not change the value.
- :func:`fid`: Fréchet distance between the same features (comparable only with other values
  from the same feature network, never with published Inception FIDs).
- :func:`ms_ssim_diversity`: mean pairwise MS-SSIM among generated volumes (MONAI
  ``MultiScaleSSIMMetric``); lower means more diverse samples (1 = all identical, mode collapse).

A linear-kernel MMD on raw voxels (MONAI ``MMDMetric`` as is) compares only mean images, depends on
the intensity scale and, in its unbiased form, can be negative: it is not used here.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Sequence

import torch
from monai.metrics import MultiScaleSSIMMetric

from medgen.errors import DataError
from medgen.evaluate import features as _features

Volumes = Sequence[torch.Tensor] | torch.Tensor


def _stack(volumes: Volumes) -> torch.Tensor:
    if isinstance(volumes, torch.Tensor):
        return volumes.float()
    return torch.stack([torch.as_tensor(v).float() for v in volumes])


@functools.lru_cache(maxsize=1)
def _shipped() -> _features.FeatureExtractor:
    return _features.load_feature_extractor()


def feature_vectors(volumes: Volumes, extractor: _features.FeatureExtractor | None = None) -> torch.Tensor:
    """``(N, F)`` features of 3D volumes ``(N, C, X, Y, Z)`` (or a list of ``(C, X, Y, Z)``), any units."""
    x = _stack(volumes)
    if x.ndim != 5:
        raise DataError(f"feature MMD/FID need 3D volumes (N, C, X, Y, Z), got shape {tuple(x.shape)}")
    return (extractor or _shipped())(list(x))


def mmd(real: Volumes, synthetic: Volumes, extractor: _features.FeatureExtractor | None = None) -> float:
    """Squared MMD (Gaussian kernel, median bandwidth) between features of ``real`` and ``synthetic``.

    Args:
        real, synthetic: at least 2 volumes each, ``(N, C, X, Y, Z)`` or lists of ``(C, X, Y, Z)``;
            sizes and counts may differ (every scan is resized to the network's input grid).
        extractor: feature network; the shipped ``medgen-ssl3d-v1`` by default.

    Returns:
        A dimensionless value in ``[0, 2]``: 0 for identical sets, larger is further apart.
    """
    return _features.mmd(feature_vectors(real, extractor), feature_vectors(synthetic, extractor))


def fid(real: Volumes, synthetic: Volumes, extractor: _features.FeatureExtractor | None = None) -> float:
    """Fréchet distance between features of ``real`` and ``synthetic`` (>= 0; see :func:`mmd` for inputs)."""
    return _features.fid(feature_vectors(real, extractor), feature_vectors(synthetic, extractor))


def feature_name(extractor: _features.FeatureExtractor | None = None) -> str:
    """Which features :func:`mmd` and :func:`fid` use (for tables and figure captions)."""
    return (extractor or _shipped()).name


def ms_ssim_min_size(kernel_size: int = 5, scales: int = 3) -> int:
    """Smallest spatial size (voxels, on every axis) on which :func:`ms_ssim_diversity` runs.

    MONAI refuses sizes with ``size // max(1, scales - 1)**2 <= kernel_size - 1``, and the coarsest
    of the ``scales`` levels (``size // 2**(scales - 1)`` voxels) must still hold one window: 20 for
    the defaults (a 5-voxel window, 3 scales).
    """
    return kernel_size * max(max(1, scales - 1) ** 2, 2 ** (scales - 1))


def ms_ssim_diversity(samples: Volumes, data_range: float = 2.0, kernel_size: int = 5, scales: int = 3) -> float:
    """Mean MS-SSIM over all pairs of ``samples`` (``(N, C, *spatial)``, N >= 2, values spanning
    ``data_range``); ``scales`` levels of 2x downsampling, so every spatial size must be at least
    :func:`ms_ssim_min_size` (20 voxels for the defaults)."""
    x = _stack(samples)
    need = ms_ssim_min_size(kernel_size, scales)
    if min(x.shape[2:]) < need:
        raise DataError(f"MS-SSIM with {scales} scales and a {kernel_size}-voxel window needs every spatial size "
                        f">= {need} voxels, got {tuple(x.shape[2:])}")
    metric = MultiScaleSSIMMetric(spatial_dims=x.ndim - 2, data_range=data_range, kernel_size=kernel_size,
                                  weights=[1.0 / scales] * scales)
    pairs = list(itertools.combinations(range(x.shape[0]), 2))
    values = [float(metric(x[i : i + 1], x[j : j + 1]).mean()) for i, j in pairs]
    return sum(values) / len(values)
