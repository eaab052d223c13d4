"""NRRD / MHA / MHD reading and writing through SimpleITK (LPS on disk, RAS in medgen)."""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import warnings
from pathlib import Path

import numpy as np
import SimpleITK as sitk
import torch
from monai.data import MetaTensor

from medgen.errors import MedgenWarning, ScanReadError, ScanWriteError
from medgen.io.atomic import check_output_path, full_suffix, temporary_path
from medgen.io.checks import check_data_size, check_shape, check_volume
from medgen.io.itk_header import stored_bytes
from medgen.io.meta import affine_of, make_scan, meta_of, usable_affine
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
    """Read an NRRD/MHA/MHD file as a ``(C, X, Y, Z)`` float32 scan with a RAS affine.

    The header is read first; its declared size is checked against the memory budget and against
    the data it points at (:mod:`medgen.io.itk_header`) before SimpleITK allocates the image.
    SimpleITK refuses a zero spacing or a singular direction matrix; that, like any SimpleITK
    failure, becomes one :class:`ScanReadError` line with SimpleITK's reason.

    Provenance in the header's ``medgen`` key (JSON) comes back in ``meta``. If that key cannot be
    decoded, a :class:`~medgen.errors.MedgenWarning` names the file and the scan is treated as
    synthetic unless the plain-text ``medgen_summary`` key says it was derived, never the reverse.
    """
    path = Path(path)
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        reader.ReadImageInformation()
        if reader.GetDimension() != 3:
            raise ScanReadError(path, f"expected a 3D image, got a {reader.GetDimension()}D image")
        _check_declared_data(reader, path)
        image = reader.Execute()
    except RuntimeError as err:
        raise ScanReadError(path, f"SimpleITK cannot read it: {itk_reason(err)}") from None
    array = sitk.GetArrayFromImage(image)  # (Z, Y, X[, C])
    if image.GetNumberOfComponentsPerPixel() > 1:
        array = np.transpose(array, (3, 2, 1, 0))
    else:
        array = np.transpose(array, (2, 1, 0))[None]
    array = array.astype(np.float32)
    check_volume(array, path)
    affine = _LPS_TO_RAS @ lps_affine(image)
    if not usable_affine(affine):
        raise ScanReadError(path, "origin, spacing or direction is not finite or singular")
    meta = {"filename_or_obj": str(path), "format": full_suffix(path).lstrip(".")}
    meta.update(_medgen_meta(image, path))
    return make_scan(array, affine, **meta)


def itk_reason(err: RuntimeError) -> str:
    """The reason in a SimpleITK exception, without its C++ source locations and object addresses.

    SimpleITK's first line only says where the exception was thrown; the reason follows, and for
    NRRD the innermost ``[nrrd]`` line is the specific one.
    """
    lines = [ln.strip() for ln in str(err).splitlines() if ln.strip()]
    lines = [ln for ln in lines if not ln.startswith("Exception thrown in")]
    nrrd = [ln for ln in lines if ln.startswith("[nrrd]")]
    if nrrd:
        reason = re.sub(r"^\[nrrd\] \w+: ", "", nrrd[-1])
    else:
        reason = " ".join(re.sub(r"^(itk::|ITK )?ERROR: \w+\(0x[0-9a-fA-F]+\):\s*", "", ln) for ln in lines)
    return reason[:300] or "no reason given"


def _check_declared_data(reader: sitk.ImageFileReader, path: Path) -> None:
    """Refuse a header declaring more than the voxel budget or more data than is stored."""
    components = reader.GetNumberOfComponents()
    check_shape((*reader.GetSize(), components), path)
    itemsize = sitk.Image([1, 1, 1], reader.GetPixelID(), components).GetSizeOfPixelComponent()
    declared = math.prod(reader.GetSize()) * components * itemsize
    stored = stored_bytes(path, declared, itemsize)
    if stored is not None:
        check_data_size(path, declared, stored[0], compressed=stored[1])


def _medgen_meta(image: sitk.Image, path: Path) -> dict:
    """Provenance from the header's ``medgen`` JSON key; see :func:`read_itk` for an unreadable one."""
    if not image.HasMetaDataKey(_META_KEY):
        return {}
    try:
        record = json.loads(image.GetMetaData(_META_KEY))
    except ValueError:
        record = None
    if isinstance(record, dict) and isinstance(record.get("synthetic", False), bool) \
            and isinstance(record.get("provenance", []), list):
        return {k: record[k] for k in ("modality", "units", "series_description", "provenance", "synthetic")
                if k in record}
    text = image.GetMetaData("medgen_summary") if image.HasMetaDataKey("medgen_summary") else ""
    synthetic = not text.startswith("medgen DERIVED")
    warnings.warn(MedgenWarning(f"{path}: medgen provenance in the header is unreadable; "
                                f"treated as {'synthetic' if synthetic else 'derived'}"
                                f"{f' from its summary {text!r}' if text else ''}"), stacklevel=3)
    return {"synthetic": synthetic, "provenance": [{"operation": "unknown (unreadable medgen header)",
                                                    "summary": text}]}


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
    # SimpleITK may write two files (.mhd + .raw, .nhdr + .raw) whose header names the data file,
    # so write under the final names in a private temporary folder, then move them into place.
    tmpdir = temporary_path(out, is_dir=True)
    try:
        sitk.WriteImage(image, str(tmpdir / out.name), useCompression=full_suffix(out) != ".mhd")
        files = sorted(tmpdir.iterdir(), key=lambda p: p.name == out.name)  # header last
        for f in files:
            if f.name != out.name and (out.parent / f.name).exists() and not overwrite:
                raise ScanWriteError(out.parent / f.name, "output already exists; pass --overwrite")
        for f in files:
            os.replace(f, out.parent / f.name)
    except RuntimeError as err:
        raise ScanWriteError(out, f"SimpleITK cannot write it: {itk_reason(err)}") from None
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)
    return out
