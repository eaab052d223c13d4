"""Write built-in data to a folder in the layout :func:`medgen.data.load_folder` reads back.

Layout (MONAI Decathlon-style ``dataset.json``, so ``monai.data.load_decathlon_datalist`` reads it
too)::

    DIR/dataset.json                 {"name", "kind", "seed", ..., "labels", "training": [items]}
    DIR/images/sub-000.nii.gz        float32 (MR: arbitrary units; CT: HU) + sub-000.json sidecar
    DIR/labels/sub-000.nii.gz        uint8 labels
    DIR/lesion_masks/sub-000.nii.gz  CT only: uint8 lesion instances
    DIR/boxes/sub-000.json           CT only: {"boxes": [[i0, j0, k0, i1, j1, k1], ...], "box_labels": [...],
                                     "box_mode": "xyzxyz", "box_coordinates": "voxel"}

The folder is written under a temporary name and renamed into place, so a failed export leaves
nothing half-written; an existing non-empty folder is replaced only with ``overwrite``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from medgen.data.cohort import simulate_subject, subject_seed
from medgen.data.folder import BOX_FOLDER, EXPORT_FOLDERS, load_folder
from medgen.data.phantom import BOX_MODE, LABELS, ct_phantom
from medgen.errors import DataError
from medgen.io import save_scan
from medgen.io.atomic import atomic_path

KINDS = ("brain", "ct")
CT_FOV_MM = (384.0, 384.0, 288.0)
BRAIN_LABELS = {"0": "background", "1": "csf", "2": "gm", "3": "wm"}


def export_dataset(
    out_dir: str | Path,
    kind: str = "brain",
    n_subjects: int = 10,
    resolution: int = 3,
    seed: int = 0,
    overwrite: bool = False,
    *,
    contrast: str = "t1",
    on_subject: Callable[[int, int], None] | None = None,
) -> list[dict[str, Any]]:
    """Generate ``n_subjects`` brains (``kind="brain"``) or CT phantoms (``"ct"``) into ``out_dir``.

    Args:
        resolution: brain voxel size in mm (1, 2, 3). For CT, the spacing is ``2 * resolution`` mm
            over a fixed 384 x 384 x 288 mm FOV (3 → 6 mm, 64 x 64 x 48 voxels).
        seed: cohort seed; subject ``i`` is the same as ``brain_cohort(...)[i]`` / ``ct_cohort(...)[i]``.
        contrast: brain contrast, ``"t1"``, ``"t2"``, ``"pd"`` or ``"random"``.
        on_subject: called as ``on_subject(done, total)`` after each subject (progress bars).

    Returns:
        The items as :func:`medgen.data.load_folder` lists them: paths (``str``) under ``out_dir``.
    """
    if kind not in KINDS:
        raise DataError(f"unknown data kind {kind!r}; choose one of {', '.join(KINDS)}")
    if n_subjects < 1:
        raise DataError(f"number of subjects must be >= 1, got {n_subjects}")
    if resolution not in (1, 2, 3):
        raise DataError(f"resolution must be 1, 2 or 3 mm, got {resolution}")
    out = Path(out_dir)
    if out.is_dir() and not any(out.iterdir()):
        out.rmdir()  # an empty folder the user made for us is not data to protect
    entries = []
    with atomic_path(out, overwrite=overwrite, is_dir=True) as tmp:
        for i in range(n_subjects):
            item = _generate(kind, i, resolution, seed, contrast)
            entries.append(_write(item, tmp))
            if on_subject is not None:
                on_subject(i + 1, n_subjects)
        info = {
            "name": f"medgen-{kind}", "kind": kind, "seed": seed, "resolution_mm": resolution,
            "contrast": contrast if kind == "brain" else None, "synthetic": True,
            "description": "medgen built-in data: " + (
                "brains simulated from the MNI152 2009 template" if kind == "brain" else "procedural CT phantoms"),
            "labels": BRAIN_LABELS if kind == "brain" else {str(v): k for k, v in LABELS.items()},
            "box_mode": BOX_MODE if kind == "ct" else None, "box_coordinates": "voxel" if kind == "ct" else None,
            "numTraining": len(entries), "training": entries,
        }
        (tmp / "dataset.json").write_text(json.dumps(info, indent=1))
    return load_folder(out)


def _generate(kind: str, index: int, resolution: int, seed: int, contrast: str) -> dict[str, Any]:
    sid = f"sub-{index:03d}"
    if kind == "brain":
        return simulate_subject(subject_seed(seed, index), resolution, contrast, subject_id=sid)
    spacing = 2.0 * resolution
    shape = tuple(int(round(fov / spacing)) for fov in CT_FOV_MM)
    return ct_phantom(subject_seed(seed, index), shape=shape, spacing=(spacing,) * 3, subject_id=sid)


def _write(item: dict[str, Any], root: Path) -> dict[str, Any]:
    """Save one item under ``root``; return its ``dataset.json`` entry (paths relative to root)."""
    sid = item["subject_id"]
    entry: dict[str, Any] = {}
    for key, folder in EXPORT_FOLDERS.items():
        if key in item:
            rel = f"{folder}/{sid}.nii.gz"
            save_scan(item[key], root / rel, dtype=None if key == "image" else "uint8")
            entry[key] = rel
    if "boxes" in item:
        boxes = {"boxes": item["boxes"].tolist(), "box_labels": item["box_labels"].tolist(),
                 "box_mode": BOX_MODE, "box_coordinates": "voxel"}
        (root / BOX_FOLDER).mkdir(exist_ok=True)
        (root / BOX_FOLDER / f"{sid}.json").write_text(json.dumps(boxes))
        entry.update({k: boxes[k] for k in ("boxes", "box_labels")})
    entry["subject_id"] = sid
    return entry
