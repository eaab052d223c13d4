"""Every kind of bad input gives a one-line ScanReadError naming the file and the problem.

The same inputs through the CLI, with lying headers in every format: ``test_bad_input_matrix.py``.
"""

from __future__ import annotations

import gzip
import warnings
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from dicom_fixtures import lps_affine, write_classic_series

from medgen.errors import ConfigError, MedgenWarning, ScanReadError, ScanWriteError
from medgen.io import load_scan, save_scan
from medgen.io.meta import make_scan
from tests.conftest import oblique_affine


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
    cut_nii = _cut(_nifti(tmp_path / "cut.nii", real))
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
        "truncated nii": (cut_nii, "truncated"),
        "truncated nrrd": (cut_nrrd, "truncated"),
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
    "missing", "empty", "truncated gzip", "truncated nii", "truncated nrrd", "not an image (gz)",
    "not an image (plain)", "2D image", "single slice", "NaN voxels", "Inf voxels", "absurd size", "unknown format",
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


# -- geometry that places nothing -------------------------------------------------------------------


def _nifti_with(path: Path, header_fields: dict) -> Path:
    """A 12³ NIfTI whose header fields are set by hand after nibabel wrote a valid one."""
    voxels = np.random.default_rng(0).uniform(0, 100, (12, 12, 12)).astype(np.float32)
    header = nib.Nifti1Image(voxels, oblique_affine()).header
    header["vox_offset"] = 352
    for key, value in header_fields.items():
        header[key] = value
    path.write_bytes(header.binaryblock + bytes(4) + voxels.tobytes(order="F"))
    return path


ZERO_SFORM = {"srow_x": 0, "srow_y": 0, "srow_z": 0, "sform_code": 1}
AFFINE_CASES = {  # header fields → the affine nibabel's order gives, and whether a warning names the file
    "zero sform, good qform": ({**ZERO_SFORM, "qform_code": 1}, "qform", True),
    "NaN sform, no qform": ({"srow_x": [np.nan, 0, 0, 0], "sform_code": 1, "qform_code": 0}, "base", True),
    "zero sform, qform not a rotation": ({**ZERO_SFORM, "qform_code": 1, "quatern_b": 5.0}, "base", True),
    "neither coded": ({"sform_code": 0, "qform_code": 0}, "base", False),
}


@pytest.mark.parametrize("case", list(AFFINE_CASES))
def test_unusable_nifti_affine_falls_back_in_nibabels_order(tmp_path, case):
    fields, expected, warns = AFFINE_CASES[case]
    path = _nifti_with(tmp_path / "scan.nii", fields)
    header = nib.load(str(path)).header
    want = header.get_qform() if expected == "qform" else header.get_base_affine()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        scan = load_scan(path)
    np.testing.assert_allclose(scan.affine.numpy(), want, atol=1e-5)
    ours = [str(w.message) for w in caught if issubclass(w.category, MedgenWarning)]
    assert bool(ours) == warns and all(str(path) in m and "\n" not in m for m in ours), ours


def test_no_usable_nifti_affine_at_all_is_an_error(tmp_path):
    path = _nifti_with(tmp_path / "scan.nii", {**ZERO_SFORM, "qform_code": 0, "pixdim": [1, np.nan, 1, 1, 1, 1, 1, 1]})
    with pytest.raises(ScanReadError, match="no usable geometry"):
        load_scan(path)


DICOM_GEOMETRY = {
    "zero PixelSpacing": ("PixelSpacing", ["0", "0"], "not positive"),
    "NaN ImagePositionPatient": ("ImagePositionPatient", ["nan", "0", "0"], "not finite"),
    "slices of different sizes": ("Rows", 8, "different Rows x Columns"),
}


@pytest.mark.parametrize("case", list(DICOM_GEOMETRY))
def test_dicom_geometry_that_places_nothing_is_one_line_error(tmp_path, case):
    tag, value, text = DICOM_GEOMETRY[case]
    stored = np.arange(16 * 16 * 4, dtype=np.int16).reshape(16, 16, 4)
    paths = write_classic_series(tmp_path / "series", stored, lps_affine(np.eye(3), (1, 1, 2), (0, 0, 0)))
    ds = pydicom.dcmread(paths[1])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pydicom warns about 'nan' as a DS value
        setattr(ds, tag, value)
        ds.save_as(paths[1])
        with pytest.raises(ScanReadError, match=text) as err:
            load_scan(tmp_path / "series")
    assert str(tmp_path / "series") in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize("name", ["out.nii.gz", "out.nrrd", "out_dicom"])
def test_saving_a_singular_affine_is_refused(tmp_path, mni_block, name):
    affine = np.eye(4)
    affine[:3, 2] = 0
    with pytest.raises(ScanWriteError, match="singular or not finite"):
        save_scan(make_scan(mni_block, affine), tmp_path / name)
    assert list(tmp_path.iterdir()) == []


def test_simpleitk_errors_give_the_reason_not_the_source_line(tmp_path):
    path = tmp_path / "singular.nrrd"
    sitk.WriteImage(sitk.Image(8, 8, 8, sitk.sitkFloat32), str(path), False)
    path.write_bytes(path.read_bytes().replace(b"(0,1,0) (0,0,1)", b"(1,0,0) (0,0,1)"))
    with pytest.raises(ScanReadError, match="determinant is 0") as err:
        load_scan(path)
    assert ".cxx" not in str(err.value) and "Exception thrown" not in str(err.value)


# -- the memory budget and the data behind a header ------------------------------------------------------


def test_memory_budget_comes_from_MEDGEN_MAX_VOXELS(tmp_path, mni_block, monkeypatch):
    path = save_scan(mni_block, tmp_path / "scan.nrrd")
    monkeypatch.setenv("MEDGEN_MAX_VOXELS", str(mni_block.numel() - 1))
    with pytest.raises(ScanReadError, match="memory budget"):
        load_scan(path)
    monkeypatch.setenv("MEDGEN_MAX_VOXELS", str(mni_block.numel()))
    assert load_scan(path).shape == mni_block.shape
    monkeypatch.setenv("MEDGEN_MAX_VOXELS", "lots")
    with pytest.raises(ConfigError, match="MEDGEN_MAX_VOXELS"):
        load_scan(path)


def _slices_on_disk(folder: Path, volume: np.ndarray) -> list[str]:
    names = [f"slice{k:02d}.raw" for k in range(volume.shape[2])]
    for k, name in enumerate(names):
        (folder / name).write_bytes(np.ascontiguousarray(volume[:, :, k].T).tobytes())
    return names


@pytest.mark.parametrize("layout", ["nrrd LIST", "nrrd pattern", "mhd LIST", "mhd pattern"])
def test_detached_data_in_several_files_is_read_and_measured(tmp_path, layout):
    volume = np.random.default_rng(1).uniform(0, 1, (6, 5, 4)).astype(np.float32)  # (X, Y, Z)
    names = _slices_on_disk(tmp_path, volume)
    fmt, kind = layout.split()
    if fmt == "nrrd":
        head = ("NRRD0004\ntype: float\ndimension: 3\nspace: left-posterior-superior\nsizes: {}\n"
                "space directions: (1,0,0) (0,1,0) (0,0,1)\nendian: little\nencoding: raw\n")
        files = "data file: LIST 2\n" + "\n".join(names) + "\n" if kind == "LIST" else \
            "data file: slice%02d.raw 0 3 1 2\n"
    else:
        head = "ObjectType = Image\nNDims = 3\nDimSize = {}\nElementType = MET_FLOAT\nElementSpacing = 1 1 1\n"
        files = "ElementDataFile = LIST 2D\n" + "\n".join(names) + "\n" if kind == "LIST" else \
            "ElementDataFile = slice%02d.raw 0 3 1\n"
    honest = tmp_path / f"honest.{'nhdr' if fmt == 'nrrd' else 'mhd'}"
    honest.write_text(head.format("6 5 4") + files)
    np.testing.assert_array_equal(load_scan(honest)[0].numpy(), volume)
    lying = tmp_path / f"lying.{'nhdr' if fmt == 'nrrd' else 'mhd'}"
    lying.write_text(head.format("600 500 4") + files)
    with pytest.raises(ScanReadError, match="holds only 480"):
        load_scan(lying)
