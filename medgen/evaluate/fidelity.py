"""Fidelity of an enhanced scan to its reference, inside a mask, in the scan's own units.

PSNR, SSIM, MS-SSIM and MAE between ``pred`` and ``ref``, both ``(X, Y, Z)`` (or ``(C, X, Y, Z)``
with ``C = 1``) in the same units (HU for CT, scanner units for MR):

- **PSNR** ``= 10 log10(data_range^2 / MSE)`` with the MSE over the mask's voxels; ``data_range``
  defaults to ``ref.max() - ref.min()`` over the whole reference (so "noise at 5 % of max" and the
  PSNR share one scale).
- **SSIM**: MONAI's local SSIM map (:func:`monai.metrics.regression.compute_ssim_and_cs`, Gaussian
  window ``kernel_size`` voxels, sigma 1.5) averaged over the mask voxels it covers.
- **MS-SSIM**: MONAI's :class:`~monai.metrics.MultiScaleSSIMMetric` on the mask's bounding box, with as
  many scales as the box size allows (``None`` below 2 scales).
- **MAE**: mean absolute error over the mask, in the scan's units.

>>> fidelity(denoised, clean, mask=foreground_mask(clean))      # doctest: +SKIP
{'psnr': 37.1, 'ssim': 0.95, 'ms_ssim': 0.99, 'mae': 2.3}
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch
from monai.metrics import MultiScaleSSIMMetric
from monai.metrics.regression import compute_ssim_and_cs
from scipy import ndimage

from medgen.errors import ConfigError

MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)


def _volume(x) -> np.ndarray:
    a = x.detach().cpu().float().numpy() if isinstance(x, torch.Tensor) else np.asarray(x, dtype=np.float32)
    return a[0] if a.ndim == 4 else a


def foreground_mask(ref, fraction: float = 0.1, *, kind: Literal["region", "voxels"] = "region") -> np.ndarray:
    """The one voxel-foreground rule of the metrics: where a ``(X, Y, Z)`` (or ``(1, X, Y, Z)``) scan
    is above ``fraction`` of its intensity scale, bool ``(X, Y, Z)``.

    Two kinds, for the two things metrics need:

    - ``"region"`` (fidelity: PSNR, SSIM, MAE): above ``min + fraction * (max - min)``, closed
      (2 iterations) and holes filled, so the whole head or body counts, dark CSF or air inside it
      included.
    - ``"voxels"`` (intensity histograms, tissue classes, the memorisation audit): the voxels above
      ``fraction`` of the scan's 99th percentile, nothing filled; a few hot voxels do not move it.
    """
    if kind not in ("region", "voxels"):
        raise ConfigError(f"foreground kind must be 'region' or 'voxels', got {kind!r}")
    a = _volume(ref)
    if kind == "voxels":
        return a > fraction * np.percentile(a, 99)
    lo, hi = float(a.min()), float(a.max())
    mask = a > lo + fraction * (hi - lo)
    return ndimage.binary_fill_holes(ndimage.binary_closing(mask, iterations=2))


def psnr(pred, ref, mask=None, data_range: float | None = None) -> float:
    """PSNR in dB over ``mask`` (all voxels if None); ``data_range`` in the scan's units."""
    p, r = _volume(pred).astype(np.float64), _volume(ref).astype(np.float64)
    m = np.ones(r.shape, bool) if mask is None else np.asarray(mask, bool)
    rng = float(r.max() - r.min()) if data_range is None else float(data_range)
    mse = float(np.mean((p[m] - r[m]) ** 2))
    return float("inf") if mse == 0 else float(10 * np.log10(rng * rng / mse))


def mae(pred, ref, mask=None) -> float:
    """Mean absolute error over ``mask`` in the scan's units."""
    p, r = _volume(pred), _volume(ref)
    m = np.ones(r.shape, bool) if mask is None else np.asarray(mask, bool)
    return float(np.mean(np.abs(p[m].astype(np.float64) - r[m])))


def _bbox(mask: np.ndarray, margin: int) -> tuple[slice, ...]:
    idx = np.argwhere(mask)
    lo = np.maximum(idx.min(0) - margin, 0)
    hi = np.minimum(idx.max(0) + 1 + margin, mask.shape)
    return tuple(slice(a, b) for a, b in zip(lo, hi))


def ssim(pred, ref, mask=None, data_range: float | None = None, kernel_size: int = 7) -> float:
    """Mean of MONAI's SSIM map over ``mask`` (computed on the mask's bounding box for speed)."""
    p, r = _volume(pred), _volume(ref)
    m = np.ones(r.shape, bool) if mask is None else np.asarray(mask, bool)
    rng = float(r.max() - r.min()) if data_range is None else float(data_range)
    box = _bbox(m, kernel_size)
    tp, tr = (torch.from_numpy(np.ascontiguousarray(a[box]))[None, None] for a in (p, r))
    ks = [min(kernel_size, s - (1 - s % 2)) for s in tp.shape[2:]]
    ssim_map, _ = compute_ssim_and_cs(tp, tr, 3, ks, [1.5] * 3, data_range=rng)
    half = [(k - 1) // 2 for k in ks]
    mm = m[box][tuple(slice(h, h + s) for h, s in zip(half, ssim_map.shape[2:]))]
    if not mm.any():
        return float(ssim_map.mean())
    return float(ssim_map[0, 0].numpy()[mm].mean())


def ms_ssim(pred, ref, mask=None, data_range: float | None = None, kernel_size: int = 7) -> float | None:
    """MONAI multi-scale SSIM on the mask's bounding box; scales limited by its size (None if < 2)."""
    p, r = _volume(pred), _volume(ref)
    m = np.ones(r.shape, bool) if mask is None else np.asarray(mask, bool)
    rng = float(r.max() - r.min()) if data_range is None else float(data_range)
    box = _bbox(m, 0)
    tp, tr = (torch.from_numpy(np.ascontiguousarray(a[box]))[None, None] for a in (p, r))
    side = min(tp.shape[2:])
    levels = 0
    while levels < len(MS_SSIM_WEIGHTS) and side // 2**levels > (kernel_size - 1):
        levels += 1
    if levels < 2:
        return None
    weights = np.asarray(MS_SSIM_WEIGHTS[:levels])
    metric = MultiScaleSSIMMetric(3, data_range=rng, kernel_size=kernel_size, weights=tuple(weights / weights.sum()))
    return float(metric(tp, tr).mean())


def fidelity(pred, ref, mask=None, data_range: float | None = None) -> dict[str, float | None]:
    """``{"psnr", "ssim", "ms_ssim", "mae"}`` of ``pred`` against ``ref`` inside ``mask``."""
    return {
        "psnr": psnr(pred, ref, mask, data_range),
        "ssim": ssim(pred, ref, mask, data_range),
        "ms_ssim": ms_ssim(pred, ref, mask, data_range),
        "mae": mae(pred, ref, mask),
    }
