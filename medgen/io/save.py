"""One save path for every format medgen writes."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import torch

from medgen.errors import ScanWriteError
from medgen.io.atomic import full_suffix
from medgen.io.itk import write_itk
from medgen.io.load import DICOM_SUFFIXES, NIFTI_SUFFIXES, scan_format
from medgen.io.nifti import write_nifti


def save_scan(
    scan: torch.Tensor,
    path: str | Path,
    *,
    dtype: str | None = None,
    overwrite: bool = False,
    inputs: Iterable[str | Path] = (),
    series_description: str | None = None,
) -> Path:
    """Write ``scan`` ``(C, X, Y, Z)`` to ``path``; the format follows the suffix.

    ``.nii``/``.nii.gz`` → NIfTI, ``.nrrd``/``.mha``/``.mhd`` → SimpleITK, a path with no suffix
    (or ``.dcm``) → a DICOM series folder of derived CT/MR image objects.

    Writes are atomic; an existing output is kept unless ``overwrite``; a path equal to one of
    ``inputs`` is refused. ``dtype`` sets the on-disk voxel type (integers are stored exactly).

    Returns:
        The written path (file or DICOM folder).
    """
    p = Path(path)
    inputs = [i for i in inputs if i is not None]
    kind = scan_format(p) if not p.exists() or p.is_file() else "dicom"
    if full_suffix(p) in NIFTI_SUFFIXES:
        return write_nifti(scan, p, dtype=dtype, overwrite=overwrite, inputs=inputs)
    if kind == "itk":
        return write_itk(scan, p, dtype=dtype, overwrite=overwrite, inputs=inputs)
    if kind == "dicom" or full_suffix(p) in DICOM_SUFFIXES:
        from medgen.io.dicom_write import write_dicom_series

        folder = p.with_suffix("") if full_suffix(p) in DICOM_SUFFIXES else p
        return write_dicom_series(
            scan, folder, overwrite=overwrite, inputs=inputs,
            series_description=series_description, dtype=dtype,
        )
    raise ScanWriteError(p, f"unsupported output format '{full_suffix(p)}' (use .nii.gz, .nrrd, .mha or a folder)")
