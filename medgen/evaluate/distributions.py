"""Do synthetic scans have the intensities and tissue volumes of real ones?

- **Intensity histograms** inside the foreground: each scan's foreground voxels (above 10 % of its
  99th percentile) are pooled per set, in the scans' own units. :func:`intensity_distance` gives
  the 1-Wasserstein distance (earth mover's, in scan units: how far intensities must move on
  average) and the histogram intersection (1 = identical histograms, 0 = disjoint).
- **Tissue volumes** in millilitres per label of a label map (voxel volume from the affine):
  :func:`tissue_volumes`; for synthetic scans without labels, :func:`intensity_tissue_labels`
  segments CSF/GM/WM of a T1-like scan by multi-Otsu thresholds of the foreground.
  :func:`compare_volumes` tabulates real vs synthetic mean ± sd per tissue and their
  Wasserstein distance (mL) and Kolmogorov-Smirnov statistic.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from scipy import stats

from medgen.errors import DataError
from medgen.evaluate.fidelity import foreground_mask
from medgen.intensity import robust_range
from medgen.io.meta import affine_of, spacing_from_affine

TISSUE_NAMES = {1: "csf", 2: "gm", 3: "wm"}


def _array(scan: torch.Tensor) -> np.ndarray:
    v = (scan.as_tensor() if hasattr(scan, "as_tensor") else torch.as_tensor(scan)).detach().cpu().float().numpy()
    return v[0] if v.ndim == 4 else v


def foreground_values(scan: torch.Tensor, fraction: float = 0.1) -> np.ndarray:
    """Voxel values (1D) of a ``(C, X, Y, Z)`` scan's channel 0 in its foreground (``kind="voxels"``:
    above ``fraction`` of its 99th percentile; :func:`~medgen.evaluate.fidelity.foreground_mask`)."""
    v = _array(scan)
    return v[foreground_mask(v, fraction, kind="voxels")]


def intensity_distance(
    real: Sequence[torch.Tensor], synthetic: Sequence[torch.Tensor], bins: int = 64
) -> dict[str, float]:
    """Foreground intensity distributions of two sets: ``{"wasserstein", "intersection"}``.

    ``wasserstein`` is in the scans' units (0 for identical distributions); ``intersection`` in
    [0, 1] over ``bins`` common bins spanning both sets' 0.5-99.5 percentiles.
    """
    if not real or not synthetic:
        raise DataError("intensity comparison needs at least one real and one synthetic scan")
    a = np.concatenate([foreground_values(s) for s in real])
    b = np.concatenate([foreground_values(s) for s in synthetic])
    lo, hi = robust_range(np.concatenate([a, b]))
    edges = np.linspace(lo, hi if hi > lo else lo + 1, bins + 1)
    ha = np.histogram(np.clip(a, lo, hi), edges)[0] / len(a)
    hb = np.histogram(np.clip(b, lo, hi), edges)[0] / len(b)
    def sub(x: np.ndarray) -> np.ndarray:  # subsample for speed; same picks for equal-length inputs
        return x if len(x) <= 200_000 else np.random.default_rng(0).choice(x, 200_000, replace=False)

    return {"wasserstein": float(stats.wasserstein_distance(sub(a), sub(b))),
            "intersection": float(np.minimum(ha, hb).sum())}


def histograms(scans: Sequence[torch.Tensor], edges: np.ndarray) -> np.ndarray:
    """Pooled foreground histogram (probability per bin) of ``scans`` on ``edges``."""
    values = np.concatenate([foreground_values(s) for s in scans])
    return np.histogram(np.clip(values, edges[0], edges[-1]), edges)[0] / max(len(values), 1)


def intensity_tissue_labels(scan: torch.Tensor, classes: int = 3) -> np.ndarray:
    """Labels ``(X, Y, Z)`` 0 background, 1..classes by increasing intensity (multi-Otsu in the foreground).

    For a T1-like brain, 1 CSF, 2 GM, 3 WM. A crude segmentation meant for comparing sets that
    were segmented the same way, not for absolute volumes.
    """
    from skimage.filters import threshold_multiotsu

    v = _array(scan)
    fg = foreground_mask(v, kind="voxels")
    if fg.sum() < classes * 10:
        return np.zeros(v.shape, np.uint8)
    cuts = threshold_multiotsu(v[fg], classes=classes)
    labels = np.zeros(v.shape, np.uint8)
    labels[fg] = 1 + np.digitize(v[fg], cuts)
    return labels


def tissue_volumes(labels: torch.Tensor | np.ndarray, affine: np.ndarray | None = None) -> dict[int, float]:
    """Volume in mL of each non-zero label of a ``(1, X, Y, Z)``/``(X, Y, Z)`` label map.

    ``affine`` defaults to the label map's own (MetaTensor) affine, else 1 mm isotropic.
    """
    if affine is None:
        affine = affine_of(labels) if isinstance(labels, torch.Tensor) else np.eye(4)
    voxel_ml = float(np.prod(spacing_from_affine(affine))) / 1000.0
    lab = labels if isinstance(labels, np.ndarray) else _array(labels)
    lab = np.asarray(lab).round().astype(np.int64)
    values, counts = np.unique(lab[lab != 0], return_counts=True)
    return {int(v): float(c * voxel_ml) for v, c in zip(values, counts)}


def compare_volumes(
    real: Sequence[dict[int, float]], synthetic: Sequence[dict[int, float]], names: dict[int, str] | None = None,
) -> list[dict[str, Any]]:
    """Per-tissue real vs synthetic volume statistics (mL) from :func:`tissue_volumes` outputs.

    Returns one row per label: ``tissue, real_mean, real_sd, synthetic_mean, synthetic_sd,
    wasserstein_ml, ks`` (Kolmogorov-Smirnov statistic, 0 = same distribution, 1 = disjoint).
    """
    names = names or TISSUE_NAMES
    labels = sorted({k for v in list(real) + list(synthetic) for k in v})
    rows = []
    for lab in labels:
        a = np.array([v.get(lab, 0.0) for v in real])
        b = np.array([v.get(lab, 0.0) for v in synthetic])
        rows.append({
            "tissue": names.get(lab, f"label {lab}"), "real_mean": float(a.mean()), "real_sd": float(a.std()),
            "synthetic_mean": float(b.mean()), "synthetic_sd": float(b.std()),
            "wasserstein_ml": float(stats.wasserstein_distance(a, b)), "ks": float(stats.ks_2samp(a, b).statistic),
        })
    return rows
