"""A human-readable summary of a scan: shape, geometry, intensities, modality."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from medgen.io.meta import affine_of, meta_of, orientation_code, spacing_from_affine


def scan_info(scan: torch.Tensor) -> dict[str, Any]:
    """Shape ``(C, X, Y, Z)``, spacing (mm), orientation, world extent, intensity stats, modality."""
    meta = meta_of(scan)
    affine = affine_of(scan)
    array = scan.detach().cpu().float().numpy()
    q = np.percentile(array, [1, 50, 99]) if array.size else [0, 0, 0]
    shape = tuple(int(s) for s in array.shape)
    corners = np.array([[0, 0, 0, 1], [*[s - 1 for s in shape[1:]], 1]], dtype=float)
    world = (affine @ corners.T).T[:, :3]
    return {
        "file": meta.get("filename_or_obj", ""),
        "format": meta.get("format", ""),
        "shape": shape,
        "spacing_mm": tuple(round(s, 4) for s in spacing_from_affine(affine)),
        "orientation": orientation_code(affine),
        "original_orientation": meta.get("original_orientation", orientation_code(affine)),
        "origin_ras_mm": tuple(round(float(v), 3) for v in affine[:3, 3]),
        "extent_ras_mm": tuple((round(float(a), 1), round(float(b), 1)) for a, b in zip(world[0], world[1])),
        "min": float(array.min()),
        "max": float(array.max()),
        "mean": float(array.mean()),
        "p1_p50_p99": tuple(round(float(v), 3) for v in q),
        "modality": meta.get("modality", ""),
        "units": meta.get("units", ""),
        "series_description": meta.get("series_description", ""),
        "synthetic": bool(meta.get("synthetic", False)),
        "provenance": meta.get("provenance", []),
    }
