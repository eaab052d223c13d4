"""Write synthetic volumes as NIfTI files (their provenance goes into the header and a JSON sidecar)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from monai.data import MetaTensor

from medgen.errors import ConfigError, ScanWriteError
from medgen.io import save_scan
from medgen.io.atomic import check_output, check_output_path, safe_join

MAX_SAMPLES = 100_000
"""Volumes per call: the names are checked up front, and this keeps that list small."""


def sample_paths(out: str | Path, num: int, *, prefix: str = "sample", overwrite: bool = False,
                 first_index: int = 0) -> list[Path]:
    """The ``num`` paths ``out/{prefix}_{i:03d}.nii.gz`` that :func:`save_samples` writes, checked before
    any sampling: ``out`` is a folder (or absent), no name escapes it, none exists unless ``overwrite``.

    Raises:
        ScanWriteError: naming the path.
        ConfigError: ``num`` is negative or over :data:`MAX_SAMPLES`.
    """
    if not 0 <= num <= MAX_SAMPLES:
        raise ConfigError(f"key 'num': must be between 0 and {MAX_SAMPLES:,}, got {num}")
    folder = Path(out)
    if folder.exists() and not folder.is_dir():
        raise ScanWriteError(folder, "is a file; --out needs a folder")
    paths = [safe_join(folder, f"{prefix}_{first_index + i:03d}.nii.gz") for i in range(num)]
    for path in paths[1:]:
        check_output_path(path, overwrite=overwrite)
    if paths:  # the first one also proves the folder can be created and written, before any sampling
        check_output(paths[0], overwrite=overwrite)
    return paths


def save_samples(scans: Sequence[MetaTensor], out: str | Path, *, prefix: str = "sample", overwrite: bool = False,
                 first_index: int = 0) -> list[Path]:
    """Save ``scans`` as ``out/{prefix}_{i:03d}.nii.gz``; refuses to overwrite unless asked (all names
    are checked before the first is written).

    Returns:
        The written paths.
    """
    paths = sample_paths(out, len(scans), prefix=prefix, overwrite=overwrite, first_index=first_index)
    Path(out).mkdir(parents=True, exist_ok=True)
    return [save_scan(scan, path, overwrite=overwrite) for scan, path in zip(scans, paths)]
