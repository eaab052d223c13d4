"""A user's folder of scans (and optional labels) as the same MONAI list of dicts as built-in data.

Item convention (shared with :func:`medgen.data.export_dataset` and the generators):

- ``"image"``, ``"label"`` (and, for CT detection data, ``"lesion_mask"``): **file paths** (``str``)
  by default -- what MONAI's ``LoadImaged`` expects; with ``load=True`` they are MetaTensors
  ``(1, X, Y, Z)`` read by :func:`medgen.io.load_scan` (image float32; label and lesion mask uint8),
  exactly what the in-memory generators return.
- ``"subject_id"``: the file name without its suffix.
- ``"boxes"`` float32 ``(N, 6)`` (voxel ``xyzxyz``, end exclusive) and ``"box_labels"`` int64
  ``(N,)`` when the folder has box files.

Layouts read:

1. medgen's export layout (``medgen data export``): ``DIR/images/<id>.nii.gz``,
   ``DIR/labels/<id>.nii.gz``, optionally ``DIR/lesion_masks/<id>.nii.gz`` and
   ``DIR/boxes/<id>.json`` (``{"boxes": [[...]], "box_labels": [...]}``).
2. ``images_dir`` plus ``labels_dir``: labels matched by name (``<id>`` or ``<id>_label``,
   ``_labels``, ``_seg``, ``_mask``; any supported format).
3. One folder holding both: files named ``<id>_label`` / ``_seg`` / ... are the labels of ``<id>``.

Scans are NIfTI, NRRD/MHA/MHD files or DICOM series sub-folders. Either every image has a label or
none has.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from medgen.errors import DataError
from medgen.io import load_scan
from medgen.io.atomic import full_suffix

SCAN_SUFFIXES = (".nii", ".nii.gz", ".nrrd", ".nhdr", ".mha", ".mhd")
LABEL_SUFFIXES = ("_label", "_labels", "_seg", "_mask")
EXPORT_FOLDERS = {"image": "images", "label": "labels", "lesion_mask": "lesion_masks"}
BOX_FOLDER = "boxes"


def load_folder(
    images_dir: str | Path, labels_dir: str | Path | None = None, *, load: bool = False
) -> list[dict[str, Any]]:
    """List (or load) the scans of a folder as ``[{"image", "label"?, "subject_id", ...}]``.

    Args:
        images_dir: a folder of scans, or a folder written by ``medgen data export``.
        labels_dir: a folder of label maps matched to the images by name; None looks for an export
            layout or ``<id>_label``-style files next to the images.
        load: return MetaTensors instead of paths (labels as uint8).

    Returns:
        Items sorted by ``subject_id`` (see module docstring).

    Raises:
        DataError: one line naming the folder: missing, empty, or some images without a label.
    """
    root = Path(images_dir)
    if not root.is_dir():
        raise DataError(f"{root}: no such folder")
    extra: dict[str, Path] = {}
    boxes_dir = None
    if labels_dir is None and (root / EXPORT_FOLDERS["image"]).is_dir():
        extra = {key: root / name for key, name in EXPORT_FOLDERS.items() if key != "image"}
        extra = {key: path for key, path in extra.items() if path.is_dir()}
        boxes_dir = root / BOX_FOLDER if (root / BOX_FOLDER).is_dir() else None
        root = root / EXPORT_FOLDERS["image"]
    elif labels_dir is not None:
        if not Path(labels_dir).is_dir():
            raise DataError(f"{labels_dir}: no such labels folder")
        extra = {"label": Path(labels_dir)}
    scans = _scans(root)
    images = {sid: path for sid, path in scans.items() if not _is_label_name(sid)}
    if not images:
        raise DataError(f"{root}: no scans found (medgen reads {', '.join(SCAN_SUFFIXES)} and DICOM folders)")
    if "label" not in extra and any(_is_label_name(sid) for sid in scans):
        extra["label"] = root
    found = {key: scans if folder == root else _scans(folder) for key, folder in extra.items()}
    items = []
    for sid in sorted(images):
        item: dict[str, Any] = {"image": str(images[sid])}
        for key, folder in extra.items():
            match = _match(found[key], sid, same_folder=folder == root)
            if match is not None:
                item[key] = str(match)
        if boxes_dir is not None:
            item.update(read_boxes(boxes_dir / f"{sid}.json"))
        item["subject_id"] = sid
        items.append(item)
    for key in extra:
        missing = [it["subject_id"] for it in items if key not in it]
        if missing and (len(missing) < len(items) or labels_dir is not None):
            raise DataError(f"{extra[key]}: no {key} for image '{missing[0]}' ({len(missing)} of {len(items)} "
                            f"missing); name it {missing[0]}.nii.gz or {missing[0]}_label.nii.gz")
    return [load_item(it) for it in items] if load else items


def load_item(item: dict[str, Any]) -> dict[str, Any]:
    """``item`` with its image/label/lesion-mask paths replaced by MetaTensors (labels uint8)."""
    out = dict(item)
    for key in EXPORT_FOLDERS:
        if isinstance(out.get(key), (str, Path)):
            scan = load_scan(out[key])
            out[key] = scan if key == "image" else _as_labels(scan, out[key])
    return out


def _as_labels(scan: torch.Tensor, path: str | Path) -> torch.Tensor:
    values = scan.round()
    if values.numel() and (values.min() < 0 or values.max() > 255):
        raise DataError(f"{path}: label values {float(values.min()):g}..{float(values.max()):g} are not 0..255")
    return values.to(torch.uint8)


def _scans(folder: Path) -> dict[str, Path]:
    """``{id: path}`` of the scans directly in ``folder`` (files by suffix, DICOM series folders)."""
    out: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        if path.name.startswith("."):
            continue
        suffix = full_suffix(path)
        if path.is_file() and suffix in SCAN_SUFFIXES:
            sid = path.name[: len(path.name) - len(suffix)]
        elif path.is_dir() and any(p.suffix.lower() == ".dcm" for p in path.iterdir()):
            sid = path.name
        else:
            continue
        if sid in out:
            raise DataError(f"{folder}: two scans are named '{sid}' ({out[sid].name}, {path.name}); keep one")
        out[sid] = path
    return out


def _is_label_name(sid: str) -> bool:
    return sid.lower().endswith(LABEL_SUFFIXES)


def _match(scans: dict[str, Path], sid: str, *, same_folder: bool) -> Path | None:
    names = [sid + s for s in LABEL_SUFFIXES] if same_folder else [sid] + [sid + s for s in LABEL_SUFFIXES]
    lower = {k.lower(): v for k, v in scans.items()}
    for name in names:
        if name.lower() in lower:
            return lower[name.lower()]
    return None


def read_boxes(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise DataError(f"{path}: box file missing (every image of a folder with boxes/ needs one)")
    try:
        data = json.loads(path.read_text())
        boxes = torch.as_tensor(data["boxes"], dtype=torch.float32).reshape(-1, 6)
        labels = torch.as_tensor(data["box_labels"], dtype=torch.int64).reshape(-1)
    except (OSError, ValueError, KeyError, TypeError, RuntimeError) as err:
        raise DataError(f"{path}: not a box file ({err}); expected {{\"boxes\": [[6 numbers]...], "
                        f"\"box_labels\": [...]}}") from None
    if len(boxes) != len(labels):
        raise DataError(f"{path}: {len(boxes)} boxes but {len(labels)} box_labels")
    return {"boxes": boxes, "box_labels": labels}

