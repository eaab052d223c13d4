"""Write synthetic volumes as NIfTI files (their provenance goes into the header and a JSON sidecar)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from monai.data import MetaTensor

from medgen.io import save_scan
from medgen.io.atomic import safe_join


def save_samples(scans: Sequence[MetaTensor], out: str | Path, *, prefix: str = "sample", overwrite: bool = False,
                 first_index: int = 0) -> list[Path]:
    """Save ``scans`` as ``out/{prefix}_{i:03d}.nii.gz``; refuses to overwrite unless asked.

    Returns:
        The written paths.
    """
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    return [save_scan(scan, safe_join(folder, f"{prefix}_{first_index + i:03d}.nii.gz"), overwrite=overwrite)
            for i, scan in enumerate(scans)]
