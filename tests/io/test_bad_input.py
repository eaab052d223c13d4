"""Every kind of bad input gives a one-line ScanReadError naming the file and the problem."""

from __future__ import annotations

import gzip

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk

from medgen.errors import ScanReadError
from medgen.io import load_scan, save_scan


def _nifti(path, array, affine=None):
    nib.save(nib.Nifti1Image(array, np.eye(4) if affine is None else affine), str(path))
    return path


def _cut(path, keep: float = 0.5):
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    return path


def _cases(tmp_path, mni_t1_path):
    real = nib.load(str(mni_t1_path)).get_fdata()[::4, ::4, ::4].astype(np.float32)
    nan = real.copy()
    nan[3, 4, 5] = np.nan
    inf = real.copy()
    inf[1, 1, 1] = np.inf
    text = tmp_path / "notes.nii.gz"
    text.write_bytes(gzip.compress(b"this is not an image"))
    plain = tmp_path / "plain.nii"
    plain.write_text("hello, not a header")
    empty = tmp_path / "empty.nii.gz"
    empty.write_bytes(b"")
    cut_gz = _cut(_nifti(tmp_path / "cut.nii.gz", real))
    cut_nrrd = tmp_path / "cut.nrrd"
    sitk.WriteImage(sitk.GetImageFromArray(real), str(cut_nrrd), False)
    _cut(cut_nrrd, 0.6)
    huge = _nifti(tmp_path / "huge.nii", np.zeros((2, 2, 2), np.uint8))
    hdr = bytearray(huge.read_bytes())
    hdr[42:48] = np.array([20000, 20000, 20000], dtype="<i2").tobytes()
    huge.write_bytes(bytes(hdr))
    return {
        "missing": (tmp_path / "nope.nii.gz", "no such file"),
        "empty": (empty, "empty"),
        "truncated gzip": (cut_gz, "truncated|corrupt"),
        "truncated nrrd": (cut_nrrd, "cannot read"),
        "not an image (gz)": (text, "not a NIfTI|cannot read|corrupt"),
        "not an image (plain)": (plain, "not a NIfTI|cannot read"),
        "2D image": (_nifti(tmp_path / "slice.nii.gz", real[:, :, 5]), "3D"),
        "single slice": (_nifti(tmp_path / "one.nii.gz", real[:, :, 5:6]), "single slice"),
        "NaN voxels": (_nifti(tmp_path / "nan.nii.gz", nan), "NaN or Inf"),
        "Inf voxels": (_nifti(tmp_path / "inf.nii.gz", inf), "NaN or Inf"),
        "absurd size": (huge, "absurd|cannot read"),
        "unknown format": (tmp_path / "scan.xyz", "unsupported format"),
    }


CASES = [
    "missing", "empty", "truncated gzip", "truncated nrrd", "not an image (gz)", "not an image (plain)",
    "2D image", "single slice", "NaN voxels", "Inf voxels", "absurd size", "unknown format",
]


@pytest.mark.parametrize("case", CASES)
def test_bad_input_raises_one_line_error_naming_file(tmp_path, mni_t1_path, case):
    cases = _cases(tmp_path, mni_t1_path)
    path, pattern = cases[case]
    if case == "unknown format":
        path.write_bytes(b"\x00" * 300)
    with pytest.raises(ScanReadError, match=pattern) as err:
        load_scan(path)
    message = str(err.value)
    assert str(path) in message
    assert "\n" not in message


def test_reading_never_modifies_the_input(tmp_path, mni_block):
    path = save_scan(mni_block, tmp_path / "in.nii.gz")
    before = (path.read_bytes(), path.stat().st_mtime_ns)
    load_scan(path)
    assert (path.read_bytes(), path.stat().st_mtime_ns) == before
