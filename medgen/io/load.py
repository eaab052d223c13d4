"""One loader for every scan format medgen reads."""

from __future__ import annotations

from pathlib import Path

from monai.data import MetaTensor

from medgen.errors import ScanReadError
from medgen.io.atomic import full_suffix
from medgen.io.itk import ITK_SUFFIXES, read_itk
from medgen.io.nifti import read_nifti

NIFTI_SUFFIXES = (".nii", ".nii.gz")
DICOM_SUFFIXES = (".dcm", ".dicom", ".ima")


def scan_format(path: str | Path) -> str:
    """``"nifti"``, ``"itk"`` or ``"dicom"`` for a scan path (a folder is a DICOM series)."""
    p = Path(path)
    suffix = full_suffix(p)
    if suffix in NIFTI_SUFFIXES:
        return "nifti"
    if suffix in ITK_SUFFIXES:
        return "itk"
    if p.is_dir() or suffix in DICOM_SUFFIXES or suffix == "":
        return "dicom"
    return "unknown"


def load_scan(path: str | Path, *, series_uid: str | None = None) -> MetaTensor:
    """Read a scan from NIfTI, NRRD/MHA/MHD, a DICOM series folder or a DICOM (multi-frame) file.

    Args:
        path: file or DICOM folder. The input is only read, never modified.
        series_uid: for a DICOM folder holding several series, the SeriesInstanceUID to read.

    Returns:
        MetaTensor ``(C, X, Y, Z)`` float32, ``meta["affine"]`` voxel→RAS in mm, with spacing,
        original orientation, modality, units and source metadata (see :mod:`medgen.io.meta`).

    Raises:
        ScanReadError: one line naming the file and the problem (missing, empty, truncated, not an
            image, 2D, NaN/Inf voxels, inconsistent DICOM geometry, ...).
    """
    p = Path(path)
    if not p.exists():
        raise ScanReadError(p, "no such file or folder")
    if p.is_file() and p.stat().st_size == 0:
        raise ScanReadError(p, "file is empty")
    kind = scan_format(p)
    if kind == "nifti":
        return read_nifti(p)
    if kind == "itk":
        return read_itk(p)
    from medgen.io.dicom_read import is_dicom_file, read_dicom

    if kind == "dicom" or is_dicom_file(p):
        return read_dicom(p, series_uid=series_uid)
    raise ScanReadError(
        p, f"unsupported format '{full_suffix(p)}' (medgen reads .nii, .nii.gz, .nrrd, .mha, .mhd, DICOM)"
    )
