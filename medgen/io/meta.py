"""Build and inspect the :class:`monai.data.MetaTensor` every medgen reader returns.

Conventions (shared by every reader and writer):

- array: channel-first ``(C, X, Y, Z)``, ``float32`` unless asked otherwise; voxel axis ``i`` of the
  array is the first spatial axis of the file.
- ``meta["affine"]``: 4x4 float64 tensor mapping voxel indices ``(i, j, k, 1)`` to **RAS** world
  millimetres (MONAI's convention); ``meta["space"] == "RAS"``.
- ``meta["spacing"]``: voxel size in mm, tuple of 3 floats; ``meta["original_orientation"]``: the
  axis codes of the source (``"RAS"``, ``"LPS"``, ``"LIA"`` …).
- ``meta["modality"]`` (``"MR"``, ``"CT"`` or ``""``), ``meta["units"]`` (``"HU"`` for CT, ``""``
  when unknown), ``meta["series_description"]``, ``meta["filename_or_obj"]``, ``meta["format"]``.
- ``meta["dicom"]``: for DICOM sources, the tags needed to write a derived series (JSON-able dict).
- ``meta["provenance"]``: list of operations applied by medgen; ``meta["synthetic"]``: bool.
"""

from __future__ import annotations

from typing import Any

import nibabel as nib
import numpy as np
import torch
from monai.data import MetaTensor

STANDARD_KEYS = (
    "modality",
    "units",
    "series_description",
    "filename_or_obj",
    "format",
    "provenance",
    "synthetic",
)


def make_scan(
    array: np.ndarray | torch.Tensor,
    affine: np.ndarray,
    *,
    channel_first: bool = True,
    dtype: torch.dtype | None = torch.float32,
    **meta: Any,
) -> MetaTensor:
    """Wrap ``array`` and its RAS ``affine`` as a medgen scan.

    Args:
        array: ``(C, X, Y, Z)`` if ``channel_first`` else ``(X, Y, Z)`` (a channel is added).
        affine: 4x4 voxel-to-RAS matrix in mm.
        dtype: torch dtype of the result; ``None`` keeps the array's dtype.
        **meta: extra metadata (see module docstring for the standard keys).

    Returns:
        MetaTensor ``(C, X, Y, Z)`` with ``affine``, ``spacing``, ``original_orientation`` set.
    """
    data = torch.as_tensor(np.ascontiguousarray(array) if isinstance(array, np.ndarray) else array)
    if not channel_first:
        data = data[None]
    if dtype is not None:
        data = data.to(dtype)
    affine = np.asarray(affine, dtype=np.float64)
    full = {
        "modality": "",
        "units": "",
        "series_description": "",
        "filename_or_obj": "",
        "format": "",
        "provenance": [],
        "synthetic": False,
    }
    full.update(meta)
    full["affine"] = torch.as_tensor(affine, dtype=torch.float64)
    full.setdefault("original_affine", torch.as_tensor(affine, dtype=torch.float64))
    full["space"] = "RAS"
    full["spacing"] = spacing_from_affine(affine)
    full.setdefault("original_orientation", orientation_code(affine))
    return MetaTensor(data, meta=full)


def spacing_from_affine(affine: np.ndarray) -> tuple[float, float, float]:
    """Voxel size in mm along each array axis: the column norms of the affine's 3x3 block."""
    a = np.asarray(affine, dtype=np.float64)
    return tuple(float(v) for v in np.linalg.norm(a[:3, :3], axis=0))


def fine_axes(spacing) -> tuple[int, ...]:
    """Indices of the axes whose spacing (mm) is within 1.5x of the finest: the acquisition plane(s)
    of a thick-slice scan, all axes of a near-isotropic one."""
    s = np.asarray(spacing, float)
    return tuple(int(a) for a in np.flatnonzero(s <= 1.5 * s.min()))


def usable_affine(affine: np.ndarray) -> bool:
    """True if ``affine`` places voxels in the world: finite, three non-zero independent axes.

    An all-zero sform, a zero voxel size or a NaN entry fail; readers then fall back or refuse
    (see :func:`medgen.io.nifti.read_nifti`), writers refuse.
    """
    a = np.asarray(affine, dtype=np.float64)
    if a.shape != (4, 4) or not np.all(np.isfinite(a)):
        return False
    norms = np.linalg.norm(a[:3, :3], axis=0)
    if np.any(norms == 0):
        return False
    return abs(np.linalg.det(a[:3, :3] / norms)) > 1e-6  # unit axes that are not (nearly) coplanar


def orientation_code(affine: np.ndarray) -> str:
    """Three-letter RAS axis code of a voxel-to-RAS affine, e.g. ``"LPS"`` or ``"RAS"``.

    ``"???"`` for an affine that is not :func:`usable_affine` (it orients nothing).
    """
    if not usable_affine(affine):
        return "???"
    return "".join(nib.aff2axcodes(np.asarray(affine, dtype=np.float64)))


def affine_of(scan: torch.Tensor) -> np.ndarray:
    """The 4x4 voxel-to-RAS affine of ``scan`` (identity for a plain tensor)."""
    if isinstance(scan, MetaTensor):
        return np.asarray(scan.affine.detach().cpu().numpy(), dtype=np.float64)
    return np.eye(4)


def meta_of(scan: torch.Tensor) -> dict[str, Any]:
    """The metadata dict of ``scan`` (empty for a plain tensor)."""
    return dict(scan.meta) if isinstance(scan, MetaTensor) else {}


def like(reference: torch.Tensor, array: np.ndarray | torch.Tensor, **updates: Any) -> MetaTensor:
    """A new scan with ``array`` as data and ``reference``'s geometry and metadata (copied)."""
    meta = {k: v for k, v in meta_of(reference).items() if k not in ("affine", "spacing", "space")}
    meta.update(updates)
    meta.pop("original_affine", None)
    return make_scan(array, affine_of(reference), dtype=None, **meta)
