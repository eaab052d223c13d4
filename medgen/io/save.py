"""One save path for every format medgen writes."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import torch

from medgen.errors import ScanWriteError
from medgen.io.atomic import check_output, full_suffix, os_problem
from medgen.io.itk import write_itk
from medgen.io.load import DICOM_SUFFIXES, NIFTI_SUFFIXES, scan_format
from medgen.io.meta import affine_of, usable_affine
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
    Raises:
        ScanWriteError: one line naming the path: the checks above, an affine that is singular or
            not finite, and any ``OSError`` (permission, no space, a file where a folder must be).
    """
    p = Path(path)
    inputs = [i for i in inputs if i is not None]
    kind, target = _target(p)
    if not usable_affine(affine_of(scan)):
        raise ScanWriteError(p, "the scan's affine is singular or not finite; no format can place its voxels")
    try:
        if kind == "nifti":
            return write_nifti(scan, p, dtype=dtype, overwrite=overwrite, inputs=inputs)
        if kind == "itk":
            return write_itk(scan, p, dtype=dtype, overwrite=overwrite, inputs=inputs)
        from medgen.io.dicom_write import write_dicom_series

        return write_dicom_series(
            scan, target, overwrite=overwrite, inputs=inputs,
            series_description=series_description, dtype=dtype,
        )
    except OSError as err:
        raise ScanWriteError(target, os_problem(err)) from None


def check_save(path: str | Path, *, overwrite: bool = False, inputs: Iterable[str | Path] = ()) -> Path:
    """Check before any work that :func:`save_scan` can write ``path``: :func:`~medgen.io.atomic.check_output`
    for the file, or the folder of a DICOM series, that it would write. Raises :class:`ScanWriteError`."""
    kind, target = _target(Path(path))
    return check_output(target, overwrite=overwrite, inputs=[i for i in inputs if i is not None],
                        is_dir=kind == "dicom")


def _target(p: Path) -> tuple[str, Path]:
    """The writer :func:`save_scan` uses for ``p`` (``"nifti"``, ``"itk"``, ``"dicom"``) and the path it writes."""
    if full_suffix(p) in NIFTI_SUFFIXES:
        return "nifti", p
    kind = scan_format(p) if not p.exists() or p.is_file() else "dicom"
    if kind == "itk":
        return "itk", p
    if kind == "dicom" or full_suffix(p) in DICOM_SUFFIXES:
        return "dicom", p.with_suffix("") if full_suffix(p) in DICOM_SUFFIXES else p
    raise ScanWriteError(p, f"unsupported output format '{full_suffix(p)}' (use .nii.gz, .nrrd, .mha or a folder)")
