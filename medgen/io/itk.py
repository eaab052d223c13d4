"""NRRD / MHA / MHD reading and writing through SimpleITK (LPS on disk, RAS in medgen)."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import SimpleITK as sitk
import torch
from monai.data import MetaTensor

from medgen.errors import ScanReadError, ScanWriteError
from medgen.io.atomic import check_output_path, full_suffix
from medgen.io.checks import check_volume
from medgen.io.meta import affine_of, make_scan, meta_of
from medgen.io.provenance import summary

ITK_SUFFIXES = (".nrrd", ".nhdr", ".mha", ".mhd")
_LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])
_META_KEY = "medgen"


def lps_affine(image: sitk.Image) -> np.ndarray:
    """Voxel (i, j, k) → LPS mm affine of a SimpleITK image."""
    spacing = np.asarray(image.GetSpacing(), dtype=np.float64)
    direction = np.asarray(image.GetDirection(), dtype=np.float64).reshape(3, 3)
    affine = np.eye(4)
    affine[:3, :3] = direction * spacing[None, :]
    affine[:3, 3] = image.GetOrigin()
    return affine


def read_itk(path: str | Path) -> MetaTensor:
    """Read an NRRD/MHA/MHD file as a ``(C, X, Y, Z)`` float32 scan with a RAS affine."""
    path = Path(path)
    try:
        image = sitk.ReadImage(str(path))
    except RuntimeError as err:
        first = str(err).strip().splitlines()
        detail = next((ln for ln in first if "ERROR" in ln or "Exception" in ln), first[-1] if first else "")
        raise ScanReadError(path, f"SimpleITK cannot read it ({detail.strip()[:160]})") from None
    if image.GetDimension() != 3:
        raise ScanReadError(path, f"expected a 3D image, got a {image.GetDimension()}D image")
    array = sitk.GetArrayFromImage(image)  # (Z, Y, X[, C])
    if image.GetNumberOfComponentsPerPixel() > 1:
        array = np.transpose(array, (3, 2, 1, 0))
    else:
        array = np.transpose(array, (2, 1, 0))[None]
    array = array.astype(np.float32)
    check_volume(array, path)
    meta = {"filename_or_obj": str(path), "format": full_suffix(path).lstrip(".")}
    if image.HasMetaDataKey(_META_KEY):
        try:
            meta.update(json.loads(image.GetMetaData(_META_KEY)))
        except ValueError:
            pass
    return make_scan(array, _LPS_TO_RAS @ lps_affine(image), **meta)


def write_itk(
    scan: torch.Tensor, path: str | Path, *, dtype=None, overwrite: bool = False, inputs=()
) -> Path:
    """Write ``scan`` ``(C, X, Y, Z)`` as NRRD/MHA/MHD atomically; integer data stays integer.

    Provenance and synthetic marking go into the header's ``medgen`` key (JSON).
    """
    path = Path(path)
    out = check_output_path(path, overwrite=overwrite, inputs=inputs)
    meta = meta_of(scan)
    array = scan.detach().cpu().numpy() if isinstance(scan, torch.Tensor) else np.asarray(scan)
    if dtype is not None:
        target = np.dtype(dtype)
        array = np.rint(array).astype(target) if np.issubdtype(target, np.integer) else array.astype(target)
    elif np.issubdtype(array.dtype, np.floating):
        array = array.astype(np.float32)
    if array.shape[0] == 1:
        image = sitk.GetImageFromArray(np.transpose(array[0], (2, 1, 0)))
    else:
        image = sitk.GetImageFromArray(np.transpose(array, (3, 2, 1, 0)), isVector=True)
    lps = np.linalg.inv(_LPS_TO_RAS) @ affine_of(scan)
    spacing = np.linalg.norm(lps[:3, :3], axis=0)
    if np.any(spacing <= 0):
        raise ScanWriteError(path, "affine has a zero-length axis")
    image.SetSpacing(spacing.tolist())
    image.SetDirection((lps[:3, :3] / spacing[None, :]).flatten().tolist())
    image.SetOrigin(lps[:3, 3].tolist())
    record = {k: meta[k] for k in ("modality", "units", "series_description", "provenance", "synthetic") if k in meta}
    if record.get("provenance") or record.get("synthetic"):
        image.SetMetaData(_META_KEY, json.dumps(record, default=str))
        image.SetMetaData("medgen_summary", summary(meta))
    out.parent.mkdir(parents=True, exist_ok=True)
    # SimpleITK may write two files (.mhd + .raw, .nhdr + .raw) whose header names the data file,
    # so write under the final names in a private temporary folder, then move them into place.
    tmpdir = Path(tempfile.mkdtemp(prefix=".medgen-tmp-", dir=out.parent))
    try:
        sitk.WriteImage(image, str(tmpdir / out.name), useCompression=full_suffix(out) != ".mhd")
        files = sorted(tmpdir.iterdir(), key=lambda p: p.name == out.name)  # header last
        for f in files:
            if f.name != out.name and (out.parent / f.name).exists() and not overwrite:
                raise ScanWriteError(out.parent / f.name, "output already exists; pass --overwrite")
        for f in files:
            os.replace(f, out.parent / f.name)
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)
    return out
