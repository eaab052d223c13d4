"""Sanity checks on voxel arrays that every reader runs, so bad scans fail early and clearly."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from medgen.errors import ScanReadError

MAX_VOXELS = 2048**3 // 4  # ~2.1e9 voxels: beyond any scan a CPU pipeline can hold
MAX_SIDE = 8192


def check_shape(shape: tuple[int, ...], path: str | Path) -> None:
    """Refuse absurd header sizes before any voxel is read (a corrupt header must not exhaust memory)."""
    n = 1
    for side in shape:
        n *= int(side)
    if any(int(s) > MAX_SIDE for s in shape) or n > MAX_VOXELS:
        raise ScanReadError(path, f"absurd image size {tuple(int(s) for s in shape)}; is the header corrupt?")


def check_volume(array: np.ndarray, path: str | Path, *, spatial_dims: int = 3, channel_first: bool = True) -> None:
    """Raise :class:`ScanReadError` naming ``path`` if ``array`` is not a usable volume.

    Checks: spatial rank (a 2D image where 3D is needed), empty or absurd sizes, NaN/Inf voxels.
    ``array`` is ``(C, X, Y, Z)`` when ``channel_first`` else ``(X, Y, Z)``.
    """
    spatial = array.shape[1:] if channel_first else array.shape
    if len(spatial) != spatial_dims:
        raise ScanReadError(path, f"expected a {spatial_dims}D image, got shape {tuple(spatial)}")
    if spatial_dims == 3 and min(spatial) <= 1:
        raise ScanReadError(path, f"expected a 3D volume, got a single slice of shape {tuple(spatial)}")
    if array.size == 0:
        raise ScanReadError(path, "image has no voxels")
    if max(spatial) > MAX_SIDE or array.size > MAX_VOXELS:
        raise ScanReadError(path, f"absurd image size {tuple(array.shape)}; is the header corrupt?")
    if np.issubdtype(array.dtype, np.floating):
        bad = ~np.isfinite(array)
        if bad.any():
            raise ScanReadError(path, f"{int(bad.sum())} voxels are NaN or Inf")
