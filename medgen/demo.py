"""``medgen demo``: the main job on the built-in data, end to end, in a few minutes on a CPU.

Each step writes into one output folder and returns the paths it wrote, so the CLI can print them
and notebooks can show them.
"""

from __future__ import annotations

from pathlib import Path

from medgen.io import load_scan, save_scan
from medgen.io.atomic import safe_join
from medgen.io.provenance import mark
from medgen.viz import save_montage


def demo_io(out: Path, *, overwrite: bool = False) -> dict[str, Path]:
    """Load the built-in MNI152 T1 (1 mm), write it as NIfTI, NRRD, MHA and a DICOM MR series,
    re-read each and write an orthogonal-slice PNG montage.

    Returns:
        ``{label: path}`` of everything written under ``out``.
    """
    from medgen.data.mni152 import mni152_files

    t1 = load_scan(mni152_files()["t1"])
    t1.meta["modality"] = "MR"
    t1 = mark(t1, "demo-export", synthetic=False)
    written: dict[str, Path] = {}
    for label, name in (("NIfTI", "mni152_t1.nii.gz"), ("NRRD", "mni152_t1.nrrd"), ("MHA", "mni152_t1.mha"),
                        ("DICOM series", "mni152_t1_dicom")):
        written[label] = save_scan(t1, safe_join(out, name), dtype="int16", overwrite=overwrite)
    reread = [load_scan(p) for p in written.values()]
    written["montage (each format re-read)"] = save_montage(
        reread, safe_join(out, "mni152_formats.png"), titles=list(written), overwrite=overwrite
    )
    return written
