"""The data part of ``medgen demo``: every scan format, the simulated cohort and the CT phantom."""

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


def demo_cohort(out: Path, *, resolution: int = 2, seed: int = 0, overwrite: bool = False) -> dict[str, Path]:
    """Simulate built-in subjects and write montages next to the real template.

    Writes ``cohort.png`` (MNI152 template, then T1-, T2- and PD-like simulated subjects with their
    tissue labels) and ``ct_phantom.png`` (two CT phantoms with their lesion masks).

    Returns:
        ``{label: path}`` of the PNGs.
    """
    from medgen.data import ct_phantom, mni152, simulate_subject
    from medgen.data.cohort import subject_seed

    template = mni152(resolution)
    scans, titles = [template["image"], template["label"]], ["MNI152 template (real)", "template labels"]
    for i, contrast in enumerate(("t1", "t2", "pd", "t1")):
        subject = simulate_subject(subject_seed(seed, i), resolution, contrast)
        scans += [subject["image"], subject["label"]]
        titles += [f"simulated {contrast.upper()} #{i}", f"labels #{i}"]
    written = {"brain cohort montage": save_montage(scans, safe_join(out, "cohort.png"), titles=titles,
                                                    overwrite=overwrite)}
    ct_scans, ct_titles, ct_centres = [], [], []
    for i in range(2):
        phantom = ct_phantom(subject_seed(seed, 100 + i), shape=(96, 96, 72), spacing=(4.0, 4.0, 4.0))
        boxes = phantom["boxes"]
        centre = [int(v) for v in (boxes[0, :3] + boxes[0, 3:]) / 2] if len(boxes) else None
        ct_scans += [phantom["image"], phantom["lesion_mask"]]
        ct_titles += [f"CT phantom #{i} (HU)", f"lesions #{i} ({len(boxes)} boxes)"]
        ct_centres += [centre, centre]
    written["CT phantom montage"] = save_montage(ct_scans, safe_join(out, "ct_phantom.png"), titles=ct_titles,
                                                 overwrite=overwrite, percentile=(0.0, 100.0), indices=ct_centres)
    return written
