"""Figures people would rather see than read: orthogonal-slice montages of scans as PNG."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from medgen.intensity import robust_range
from medgen.io.atomic import atomic_path


def orthogonal_slices(scan: torch.Tensor | np.ndarray, index: Sequence[int] | None = None) -> list[np.ndarray]:
    """Axial, coronal and sagittal slices of channel 0 of a ``(C, X, Y, Z)`` RAS-ish scan.

    Slices are oriented for display (anterior/superior up). ``index`` is the voxel ``(i, j, k)``
    where the three planes cross; the centre by default.
    """
    array = scan.detach().cpu().float().numpy() if isinstance(scan, torch.Tensor) else np.asarray(scan)
    vol = array[0] if array.ndim == 4 else array
    i, j, k = index if index is not None else [s // 2 for s in vol.shape]
    return [np.rot90(vol[:, :, k]), np.rot90(vol[:, j, :]), np.rot90(vol[i, :, :])]


def save_montage(
    scans: Sequence[torch.Tensor],
    path: str | Path,
    *,
    titles: Sequence[str] | None = None,
    overwrite: bool = False,
    percentile: tuple[float, float] = (0.5, 99.5),
    cmap: str = "gray",
    indices: Sequence[Sequence[int] | None] | None = None,
) -> Path:
    """Write a PNG with one row per scan (axial, coronal, sagittal), each windowed to its own
    intensity ``percentile`` range, with world aspect ratio from the scan's spacing. ``indices``
    gives, per row, the voxel ``(i, j, k)`` where the planes cross (centre when None).

    Returns:
        The written path.
    """
    from matplotlib.figure import Figure  # no pyplot: never touches a notebook's backend

    titles = list(titles) if titles is not None else [f"scan {n}" for n in range(len(scans))]
    fig = Figure(figsize=(9, 3 * len(scans)))
    axes = fig.subplots(len(scans), 3, squeeze=False)
    indices = list(indices) if indices is not None else [None] * len(scans)
    for row, (scan, title, index) in enumerate(zip(scans, titles, indices)):
        spacing = tuple(getattr(scan, "meta", {}).get("spacing", (1.0, 1.0, 1.0)))
        planes = orthogonal_slices(scan, index)
        lo, hi = robust_range(np.concatenate([p.ravel() for p in planes]), *percentile)
        aspects = [spacing[1] / spacing[0], spacing[2] / spacing[0], spacing[2] / spacing[1]]
        for col, (plane, aspect, name) in enumerate(zip(planes, aspects, ("axial", "coronal", "sagittal"))):
            ax = axes[row, col]
            ax.imshow(plane, cmap=cmap, vmin=lo, vmax=hi if hi > lo else lo + 1, aspect=aspect)
            ax.set_xticks([])
            ax.set_yticks([])
            if col == 0:
                ax.set_ylabel(title, fontsize=9)
            if row == 0:
                ax.set_title(name, fontsize=9)
    fig.tight_layout()
    with atomic_path(path, overwrite=overwrite) as tmp:
        fig.savefig(tmp, dpi=90, format="png")
    return Path(path)
