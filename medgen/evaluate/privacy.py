"""Memorisation audit: does a synthetic scan copy a training patient?

Synthetic data is shared so that no patient is in it. A generative model that memorised its
training set breaks that promise by emitting near-copies. For each synthetic scan this audit finds
its nearest training scan and their similarity, and flags it when the similarity is higher than
two *distinct* real patients ever reach:

- similarity ``"ncc"`` (default): normalised cross-correlation of the voxels inside the training
  set's foreground (union of voxels above 10 % of each scan's 99th percentile), after resampling to
  the training grid (trilinear; at most ``max_side`` voxels a side). 1 for identical scans, blind to
  a global gain/offset. ``"features"``: cosine similarity of
  :mod:`medgen.evaluate.features` vectors (less sensitive to noise, more to anatomy).
- threshold: the real-real reference is every training scan's nearest *other* training scan (or,
  when given, each held-out real scan's nearest training scan). ``threshold = r + margin * (1 - r)``
  with ``r`` the highest such similarity: a synthetic scan must be closer to a training patient
  than any real patient is to another, by ``margin`` of the remaining gap to 1.

Assumes scans are registered to a common space (as medgen's models generate them); for scans in
native space register first, or use ``"features"``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from medgen.errors import DataError
from medgen.evaluate.fidelity import foreground_mask


def _volume(scan: torch.Tensor) -> torch.Tensor:
    v = (scan.as_tensor() if hasattr(scan, "as_tensor") else torch.as_tensor(scan)).detach().cpu().float()
    return v[0] if v.ndim == 4 else v


def _grid(scans: Sequence[torch.Tensor], shape: Sequence[int]) -> torch.Tensor:
    out = []
    for s in scans:
        v = _volume(s)
        if tuple(v.shape) != tuple(shape):
            v = F.interpolate(v[None, None], size=tuple(shape), mode="trilinear", align_corners=False)[0, 0]
        out.append(v)
    return torch.stack(out)


def ncc_matrix(queries: Sequence[torch.Tensor], references: Sequence[torch.Tensor], max_side: int = 96) -> np.ndarray:
    """Normalised cross-correlation ``(Q, R)`` between ``(C, X, Y, Z)`` scans, in the references' foreground."""
    shape = _volume(references[0]).shape
    scale = min(1.0, max_side / max(shape))
    shape = tuple(max(2, round(s * scale)) for s in shape)
    ref, qry = _grid(references, shape), _grid(queries, shape)
    mask = torch.from_numpy(np.any([foreground_mask(r, kind="voxels") for r in ref], axis=0))
    if int(mask.sum()) < 8:
        raise DataError("reference scans have no foreground to compare")

    def standardise(x: torch.Tensor) -> torch.Tensor:
        x = x[:, mask].double()
        x = x - x.mean(1, keepdim=True)
        return x / x.norm(dim=1, keepdim=True).clamp_min(1e-12)

    return (standardise(qry) @ standardise(ref).T).numpy()


def feature_cosine_matrix(
    queries: Sequence[torch.Tensor], references: Sequence[torch.Tensor], extractor=None
) -> np.ndarray:
    """Cosine similarity ``(Q, R)`` of feature vectors (shipped extractor by default)."""
    from medgen.evaluate.features import load_feature_extractor

    extractor = extractor or load_feature_extractor()
    q, r = F.normalize(extractor(queries), dim=1), F.normalize(extractor(references), dim=1)
    return (q @ r.T).numpy()


def similarity_matrix(queries, references, method: str = "ncc", extractor=None) -> np.ndarray:
    """``(Q, R)`` similarities by ``method`` (``"ncc"`` or ``"features"``)."""
    if method == "ncc":
        return ncc_matrix(queries, references)
    if method == "features":
        return feature_cosine_matrix(queries, references, extractor)
    raise DataError(f"unknown similarity method {method!r}; use 'ncc' or 'features'")


def memorisation_audit(
    synthetic: Sequence[torch.Tensor], training: Sequence[torch.Tensor], *,
    synthetic_names: Sequence[str] | None = None, training_names: Sequence[str] | None = None,
    holdout: Sequence[torch.Tensor] | None = None, method: str = "ncc", margin: float = 0.25, extractor=None,
) -> dict[str, Any]:
    """Nearest training scan of each synthetic scan, flagged above the real-real threshold.

    Args:
        synthetic, training: ``(C, X, Y, Z)`` scans (training: at least 2, or 1 plus ``holdout``).
        holdout: real scans *not* used in training; their nearest-training similarity defines the
            real-real reference (default: leave-one-out nearest neighbours within ``training``).
        margin: fraction of the gap between the reference maximum and 1 added to the threshold.

    Returns:
        ``{"method", "threshold", "reference": [floats], "rows": [{"synthetic", "nearest",
        "similarity", "flag"}], "flagged": [names]}``.
    """
    if len(synthetic) == 0:
        raise DataError("no synthetic scans to audit")
    if len(training) + (len(holdout) if holdout is not None else 0) < 2:
        raise DataError("the audit needs at least 2 real scans to know how similar distinct patients are")
    syn_names = list(synthetic_names or [f"synthetic {i}" for i in range(len(synthetic))])
    train_names = list(training_names or [f"training {i}" for i in range(len(training))])
    if holdout is not None and len(holdout):
        reference = similarity_matrix(holdout, training, method, extractor).max(1)
    else:
        rr = similarity_matrix(training, training, method, extractor)
        np.fill_diagonal(rr, -np.inf)
        reference = rr.max(1)
    top = float(np.max(reference))
    threshold = top + margin * (1.0 - top)
    sim = similarity_matrix(synthetic, training, method, extractor)
    rows = []
    for i, name in enumerate(syn_names):
        j = int(np.argmax(sim[i]))
        rows.append({"synthetic": name, "nearest": train_names[j], "similarity": float(sim[i, j]),
                     "flag": bool(sim[i, j] > threshold)})
    return {"method": method, "threshold": threshold, "reference": [float(v) for v in reference], "rows": rows,
            "flagged": [r["synthetic"] for r in rows if r["flag"]]}
