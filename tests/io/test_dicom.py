"""DICOM series / enhanced multi-frame reading and derived-series writing (medgen.io.dicom_*)."""

from __future__ import annotations

import json

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
import torch
from dicom_fixtures import (
    LPS_TO_RAS,
    lps_affine,
    mni_block,
    rotation,
    write_classic_series,
    write_enhanced_mr,
    write_structured_report,
)
from pydicom.uid import JPEG2000Lossless, JPEGLSLossless, RLELossless, generate_uid

from medgen.errors import ScanReadError, ScanWriteError
from medgen.io.dicom_read import is_dicom_file, read_dicom
from medgen.io.dicom_write import write_dicom_series
from medgen.io.meta import make_scan
from medgen.io.provenance import mark

SHAPE = (24, 20, 16)  # X (columns), Y (rows), Z (slices)


@pytest.fixture
def stored() -> np.ndarray:
    """Stored int16 values whose every voxel differs, so any mis-ordering shows."""
    rng = np.random.default_rng(0)
    return rng.integers(-1000, 2000, size=SHAPE).astype(np.int16)


@pytest.fixture
def oblique_lps() -> np.ndarray:
    """20 degrees about z then 10 about x, anisotropic voxels, off-centre origin."""
    rot = rotation("x", 10) @ rotation("z", 20)
    return lps_affine(rot, (0.9, 1.1, 2.5), (-40.2, 31.7, 12.3))


def _shuffled_names_and_numbers(n: int, seed: int = 1) -> tuple[list[str], list[int]]:
    rng = np.random.default_rng(seed)
    names = [f"{code:06d}.dcm" for code in rng.permutation(n) * 7 + 11]
    numbers = [int(v) for v in rng.permutation(n) + 1]
    if all(np.diff(numbers) < 0) or all(np.diff(numbers) > 0):
        numbers = numbers[1:] + numbers[:1]
    return names, numbers


# --- reading classic series ------------------------------------------------------------------------


def test_series_sorted_by_position_not_file_name_or_instance_number(tmp_path, stored, oblique_lps):
    names, numbers = _shuffled_names_and_numbers(SHAPE[2])
    write_classic_series(tmp_path, stored, oblique_lps, file_names=names, instance_numbers=numbers)
    scan = read_dicom(tmp_path)
    assert scan.shape == (1, *SHAPE) and scan.dtype == torch.float32
    np.testing.assert_array_equal(scan[0].numpy(), stored.astype(np.float32))
    np.testing.assert_allclose(scan.affine.numpy(), LPS_TO_RAS @ oblique_lps, atol=1e-6)


def test_rescale_slope_and_intercept_applied_per_slice(tmp_path, stored, oblique_lps):
    slopes = np.linspace(0.5, 2.0, SHAPE[2])
    intercepts = np.linspace(-1024, -900, SHAPE[2]).round()
    names, numbers = _shuffled_names_and_numbers(SHAPE[2], seed=2)
    write_classic_series(tmp_path, stored, oblique_lps, slopes=slopes, intercepts=intercepts,
                         file_names=names, instance_numbers=numbers)
    scan = read_dicom(tmp_path)
    expected = stored * slopes[None, None, :] + intercepts[None, None, :]
    np.testing.assert_allclose(scan[0].numpy(), expected, rtol=1e-6, atol=1e-3)


def test_meta_carries_modality_units_and_jsonable_dicom_tags(tmp_path, stored, oblique_lps):
    names, numbers = _shuffled_names_and_numbers(SHAPE[2])
    paths = write_classic_series(tmp_path, stored, oblique_lps, description="CT head",
                                 file_names=names, instance_numbers=numbers)
    scan = read_dicom(tmp_path)
    meta = scan.meta
    assert (meta["modality"], meta["units"], meta["format"]) == ("CT", "HU", "dicom")
    assert meta["series_description"] == "CT head" and meta["filename_or_obj"] == str(tmp_path)
    tags = meta["dicom"]
    json.dumps(tags)
    assert tags["PatientName"] == "Test^Patient" and tags["PatientID"] == "P0001"
    assert tags["StudyInstanceUID"] == "1.2.826.0.1.3680043.8.498.1"
    assert tags["FrameOfReferenceUID"] == "1.2.826.0.1.3680043.8.498.2"
    assert tags["AccessionNumber"] == "ACC42" and tags["BodyPartExamined"] == "HEAD"
    in_slice_order = [str(pydicom.dcmread(p).SOPInstanceUID) for p in paths]  # paths are in slice order
    assert tags["SOPInstanceUIDs"] == in_slice_order


def test_mr_series_has_no_units(tmp_path, stored, oblique_lps):
    write_classic_series(tmp_path, stored, oblique_lps, modality="MR")
    scan = read_dicom(tmp_path)
    assert scan.meta["modality"] == "MR" and scan.meta["units"] == ""


def test_strictly_reversed_instance_numbers_keep_acquisition_direction(tmp_path, stored, oblique_lps):
    n = SHAPE[2]
    write_classic_series(tmp_path, stored, oblique_lps, instance_numbers=list(range(n, 0, -1)))
    scan = read_dicom(tmp_path)
    flip = np.eye(4)
    flip[2, 2], flip[2, 3] = -1, n - 1  # k -> n - 1 - k
    np.testing.assert_array_equal(scan[0].numpy(), stored[:, :, ::-1])
    np.testing.assert_allclose(scan.affine.numpy(), LPS_TO_RAS @ oblique_lps @ flip, atol=1e-6)


def test_gantry_tilt_sheared_stack_read_and_written_exactly(tmp_path, stored):
    tilted = lps_affine(np.eye(3), (0.8, 0.8, 2.0), (-10.0, -20.0, 5.0))
    tilted[1, 2] = 0.35  # each slice shifts 0.35 mm posterior: a CT gantry tilt of ~10 degrees
    write_classic_series(tmp_path / "src", stored, tilted)
    scan = read_dicom(tmp_path / "src")
    np.testing.assert_allclose(scan.affine.numpy(), LPS_TO_RAS @ tilted, atol=1e-6)
    back = read_dicom(write_dicom_series(scan, tmp_path / "out"))
    np.testing.assert_allclose(back.affine.numpy(), LPS_TO_RAS @ tilted, atol=1e-4)
    np.testing.assert_array_equal(back[0].numpy(), stored)


def test_two_series_in_one_folder_need_series_uid(tmp_path, stored, oblique_lps):
    uid_a, uid_b = generate_uid(), generate_uid()
    write_classic_series(tmp_path, stored, oblique_lps, series_uid=uid_a, description="T1 axial",
                         file_names=[f"a{k}.dcm" for k in range(SHAPE[2])])
    write_classic_series(tmp_path, stored[:, :, :9] + 5, oblique_lps, series_uid=uid_b,
                         description="T2 axial", file_names=[f"b{k}.dcm" for k in range(9)])
    with pytest.raises(ScanReadError) as err:
        read_dicom(tmp_path)
    msg = str(err.value)
    assert "\n" not in msg and "2 series" in msg
    assert f"{uid_a} ('T1 axial', 16 slices)" in msg and f"{uid_b} ('T2 axial', 9 slices)" in msg
    scan = read_dicom(tmp_path, series_uid=uid_b)
    np.testing.assert_array_equal(scan[0].numpy(), stored[:, :, :9] + 5)
    assert scan.meta["dicom"]["SeriesInstanceUID"] == uid_b
    with pytest.raises(ScanReadError, match="not found"):
        read_dicom(tmp_path, series_uid="1.2.3.4")


def test_missing_slice_reports_gap_and_expected_spacing(tmp_path, stored):
    lps = lps_affine(np.eye(3), (1.0, 1.0, 2.5), (0.0, 0.0, 10.0))
    write_classic_series(tmp_path, stored, lps, skip=[7])
    with pytest.raises(ScanReadError) as err:
        read_dicom(tmp_path)
    msg = str(err.value)
    assert "missing slice" in msg and "gap of 5.000 mm" in msg
    assert "25.000 mm (slice006.dcm)" in msg and "30.000 mm (slice008.dcm)" in msg
    assert "expected spacing 2.500 mm" in msg


def test_uneven_spacing_is_an_error_not_interpolated(tmp_path, stored):
    lps = lps_affine(np.eye(3), (1.0, 1.0, 2.0), (0.0, 0.0, 0.0))
    paths = write_classic_series(tmp_path, stored, lps)
    ds = pydicom.dcmread(paths[5])
    ds.ImagePositionPatient = [0, 0, 10.8]  # slice 5 belongs at z = 10
    ds.save_as(paths[5])
    with pytest.raises(ScanReadError, match=r"uneven slice spacing: gap of 2\.800 mm .*expected spacing 2\.000"):
        read_dicom(tmp_path)


def test_duplicate_positions_are_an_error(tmp_path, stored):
    lps = lps_affine(np.eye(3), (1.0, 1.0, 2.0), (0.0, 0.0, 0.0))
    write_classic_series(tmp_path / "s", stored, lps, series_uid="1.2.3.9")
    write_classic_series(tmp_path / "s", stored, lps, series_uid="1.2.3.9",
                         file_names=[f"echo2_{k}.dcm" for k in range(SHAPE[2])])
    with pytest.raises(ScanReadError, match="duplicate slice position"):
        read_dicom(tmp_path / "s")


def test_single_slice_is_not_a_volume(tmp_path, stored):
    lps = lps_affine(np.eye(3), (1.0, 1.0, 2.0), (0.0, 0.0, 0.0))
    (path,) = write_classic_series(tmp_path, stored[:, :, :1], lps)
    with pytest.raises(ScanReadError, match="only one image slice"):
        read_dicom(tmp_path)
    with pytest.raises(ScanReadError, match="single 2D DICOM slice"):
        read_dicom(path)


def test_non_image_files_ignored_but_folder_without_images_fails(tmp_path, stored, oblique_lps):
    write_classic_series(tmp_path, stored, oblique_lps)
    write_structured_report(tmp_path / "report.dcm")
    (tmp_path / "README.txt").write_text("scanner export\n")
    (tmp_path / "DICOMDIR.bak").write_bytes(b"\x00" * 300)
    scan = read_dicom(tmp_path)
    np.testing.assert_array_equal(scan[0].numpy(), stored)
    assert is_dicom_file(tmp_path / "report.dcm") and not is_dicom_file(tmp_path / "README.txt")

    empty = tmp_path / "no_images"
    empty.mkdir()
    write_structured_report(empty / "report.dcm")
    (empty / "notes.txt").write_text("x")
    with pytest.raises(ScanReadError, match="no DICOM image slices found"):
        read_dicom(empty)


@pytest.mark.parametrize("cut", [-100, 700, 300, 140, 132],
                         ids=["in_pixels", "in_geometry", "in_header", "in_file_meta", "after_magic"])
def test_truncated_file_is_one_line_error_naming_it(tmp_path, stored, oblique_lps, cut):
    paths = write_classic_series(tmp_path, stored, oblique_lps)
    victim = paths[6]
    data = victim.read_bytes()
    victim.write_bytes(data[:cut])
    with pytest.raises(ScanReadError) as err:
        read_dicom(tmp_path)
    assert victim.name in str(err.value) and "\n" not in str(err.value)


def test_preamble_less_acr_nema_style_files_are_read(tmp_path, stored, oblique_lps):
    paths = write_classic_series(tmp_path, stored, oblique_lps)
    for p in paths:
        ds = pydicom.dcmread(p)
        del ds.file_meta
        ds.preamble = None
        ds.save_as(p, implicit_vr=True, little_endian=True)  # no preamble, no "DICM", no file meta
        assert p.read_bytes()[128:132] != b"DICM" and is_dicom_file(p)
    np.testing.assert_array_equal(read_dicom(tmp_path)[0].numpy(), stored)


def test_missing_path_and_non_dicom_file(tmp_path):
    with pytest.raises(ScanReadError, match="no such file"):
        read_dicom(tmp_path / "nope")
    (tmp_path / "x.txt").write_text("hello")
    with pytest.raises(ScanReadError, match="not a DICOM file"):
        read_dicom(tmp_path / "x.txt")


# --- enhanced multi-frame -------------------------------------------------------------------------


def test_enhanced_multiframe_uses_functional_groups(tmp_path, stored, oblique_lps):
    n = SHAPE[2]
    order = list(np.random.default_rng(3).permutation(n))
    slopes, intercepts = np.linspace(1.0, 3.0, n), np.arange(n) * 10.0
    path = write_enhanced_mr(tmp_path / "enh.dcm", stored, oblique_lps, frame_order=order,
                             slopes=slopes, intercepts=intercepts)
    scan = read_dicom(path)
    expected = stored * slopes[None, None, :] + intercepts[None, None, :]
    np.testing.assert_allclose(scan[0].numpy(), expected, rtol=1e-6, atol=1e-3)
    np.testing.assert_allclose(scan.affine.numpy(), LPS_TO_RAS @ oblique_lps, atol=1e-6)
    assert scan.meta["modality"] == "MR" and scan.meta["dicom"]["SOPClassUID"] == str(
        pydicom.uid.EnhancedMRImageStorage)
    np.testing.assert_array_equal(read_dicom(tmp_path)[0].numpy(), scan[0].numpy())  # folder of one file


def test_enhanced_multiframe_missing_frame_reports_gap(tmp_path, stored, oblique_lps):
    n = SHAPE[2]
    order = [k for k in range(n) if k != 4]
    path = write_enhanced_mr(tmp_path / "enh.dcm", stored, oblique_lps, frame_order=order,
                             slopes=np.ones(n), intercepts=np.zeros(n))
    with pytest.raises(ScanReadError, match=r"missing slice.*expected spacing 2\.500 mm"):
        read_dicom(path)


# --- compressed transfer syntaxes ----------------------------------------------------------------


@pytest.mark.parametrize("syntax", [JPEG2000Lossless, JPEGLSLossless, RLELossless], ids=lambda u: u.name)
def test_compressed_series_decoded(tmp_path, oblique_lps, syntax):
    # OpenJPEG's default 6 resolution levels need slices of at least 32 x 32
    stored = np.random.default_rng(5).integers(-1000, 2000, size=(40, 36, 6)).astype(np.int16)
    names, numbers = _shuffled_names_and_numbers(stored.shape[2], seed=4)
    paths = write_classic_series(tmp_path, stored, oblique_lps, file_names=names, instance_numbers=numbers,
                                 transfer_syntax=syntax)
    assert pydicom.dcmread(paths[0]).file_meta.TransferSyntaxUID == syntax
    scan = read_dicom(tmp_path)
    np.testing.assert_array_equal(scan[0].numpy(), stored)


def test_undecodable_transfer_syntax_names_uid_and_install_hint(tmp_path, stored, oblique_lps):
    paths = write_classic_series(tmp_path, stored, oblique_lps, transfer_syntax=RLELossless)
    for p in paths:  # relabel as MPEG-2 video: no pixel-data decoder exists for it
        ds = pydicom.dcmread(p)
        ds.file_meta.TransferSyntaxUID = pydicom.uid.MPEG2MPML
        ds.save_as(p)
    with pytest.raises(ScanReadError) as err:
        read_dicom(tmp_path)
    msg = str(err.value)
    assert str(pydicom.uid.MPEG2MPML) in msg and "pip install medgen[dicom]" in msg and "\n" not in msg


# --- writing derived series -------------------------------------------------------------------------


def _ras_affines() -> dict[str, np.ndarray]:
    ras = np.diag([0.9, 1.1, 2.5, 1.0])
    ras[:3, 3] = (-20.0, 15.0, 30.0)
    lps = np.diag([-0.9, -1.1, 2.5, 1.0])
    lps[:3, 3] = (20.0, -15.0, 30.0)
    lia = np.zeros((4, 4))  # i -> Left, j -> Inferior, k -> Anterior (FreeSurfer-like), left-handed
    lia[:3, :3] = rotation("z", 20) @ np.array([[-1.0, 0, 0], [0, 0, 1], [0, -1, 0]]) @ np.diag([0.9, 1.1, 2.5])
    lia[:, 3] = (12.5, -30.0, 44.0, 1.0)
    return {"RAS": ras, "LPS": lps, "oblique_LIA": lia}


def _sitk_ras(folder) -> tuple[np.ndarray, np.ndarray]:
    """SimpleITK's view of a series folder as an ``(X, Y, Z)`` array and a voxel-to-RAS affine."""
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(folder)))
    img = reader.Execute()
    lps = np.eye(4)
    lps[:3, :3] = np.asarray(img.GetDirection()).reshape(3, 3) * np.asarray(img.GetSpacing())
    lps[:3, 3] = img.GetOrigin()
    return sitk.GetArrayFromImage(img).transpose(2, 1, 0), LPS_TO_RAS @ lps


@pytest.mark.parametrize("name", ["RAS", "LPS", "oblique_LIA"])
def test_round_trip_keeps_affine_and_integer_values(tmp_path, stored, name):
    affine = _ras_affines()[name]
    scan = mark(make_scan(stored[None], affine, modality="CT"), "test", synthetic=False)
    assert "".join(scan.meta["original_orientation"]) == name.split("_")[-1]
    folder = write_dicom_series(scan, tmp_path / "out")
    back = read_dicom(folder)
    np.testing.assert_allclose(back.affine.numpy(), affine, atol=1e-4)
    np.testing.assert_array_equal(back[0].numpy(), stored)
    assert back.meta["modality"] == "CT" and back.meta["units"] == "HU"

    array, sitk_affine = _sitk_ras(folder)  # SimpleITK always stacks along +normal
    if np.linalg.det(affine[:3, :3]) < 0:
        flip = np.eye(4)
        flip[2, 2], flip[2, 3] = -1, SHAPE[2] - 1
        array, sitk_affine = array[:, :, ::-1], sitk_affine @ flip
    np.testing.assert_allclose(sitk_affine, affine, atol=1e-4)
    np.testing.assert_array_equal(array, stored)


def test_written_series_tags_and_slice_files(tmp_path, stored, oblique_lps):
    write_classic_series(tmp_path / "src", stored, oblique_lps, modality="CT")
    source = read_dicom(tmp_path / "src")
    derived = mark(source, "denoise", synthetic=False, model="vae-ct", seed=7)
    folder = write_dicom_series(derived, tmp_path / "out", inputs=[tmp_path / "src"])
    files = sorted(folder.iterdir())
    assert [f.name for f in files] == [f"IM{k:05d}.dcm" for k in range(1, SHAPE[2] + 1)]
    slices = [pydicom.dcmread(f) for f in files]
    first = slices[0]
    assert first.SOPClassUID == pydicom.uid.CTImageStorage and first.RescaleType == "HU"
    assert list(first.ImageType)[:2] == ["DERIVED", "SECONDARY"]
    assert first.SeriesInstanceUID != source.meta["dicom"]["SeriesInstanceUID"]
    assert len({s.SOPInstanceUID for s in slices}) == SHAPE[2]
    assert len({s.SeriesInstanceUID for s in slices}) == 1
    assert first.SeriesDescription == "medgen DERIVED denoise model=vae-ct seed=7"
    assert "denoise" in first.DerivationDescription and "vae-ct" in first.DerivationDescription
    for name in ("PatientName", "PatientID", "PatientBirthDate", "StudyInstanceUID", "AccessionNumber",
                 "FrameOfReferenceUID"):
        assert str(first.get(name)) == str(source.meta["dicom"][name])
    for k, s in enumerate(slices):
        assert s.InstanceNumber == k + 1
        expected_ipp = (np.linalg.inv(LPS_TO_RAS) @ source.affine.numpy() @ [0, 0, k, 1])[:3]
        np.testing.assert_allclose([float(v) for v in s.ImagePositionPatient], expected_ipp, atol=1e-6)
        (ref,) = s.SourceImageSequence  # same geometry: slice k derives from source slice k
        assert ref.ReferencedSOPInstanceUID == source.meta["dicom"]["SOPInstanceUIDs"][k]
    cropped = make_scan(derived[:, :, :, :5], derived.affine.numpy(), **{
        k: v for k, v in derived.meta.items() if k not in ("affine", "original_affine", "spacing", "space")})
    crop_dir = write_dicom_series(cropped, tmp_path / "crop")  # new geometry: reference the whole source
    refs = pydicom.dcmread(crop_dir / "IM00002.dcm").SourceImageSequence
    assert [r.ReferencedSOPInstanceUID for r in refs] == source.meta["dicom"]["SOPInstanceUIDs"]
    assert float(first.SpacingBetweenSlices) == pytest.approx(2.5)
    assert float(first.SliceThickness) == pytest.approx(2.5)
    assert [float(v) for v in first.PixelSpacing] == pytest.approx([1.1, 0.9])


def test_synthetic_scan_is_unmistakable_and_anonymous_without_source(tmp_path):
    block, affine = mni_block()
    scan = mark(make_scan(block[None], affine, modality="MR"), "sample", synthetic=True, model="ddpm-t1", seed=3)
    folder = write_dicom_series(scan, tmp_path / "synth")
    ds = pydicom.dcmread(folder / "IM00001.dcm")
    assert ds.SOPClassUID == pydicom.uid.MRImageStorage  # not Secondary Capture
    assert ds.SeriesDescription.startswith("SYNTHETIC") and "ddpm-t1" in ds.SeriesDescription
    assert "SYNTHETIC" in ds.ImageType and "SYNTHETIC" in ds.DerivationDescription
    assert ds.BurnedInAnnotation == "NO" and ds.ImageComments.startswith("medgen synthetic")
    assert ds.PatientName == "ANONYMOUS^MEDGEN" and "SourceImageSequence" not in ds
    back = read_dicom(folder)
    np.testing.assert_array_equal(back[0].numpy(), block)  # uint8-valued T1: stored exactly
    assert back.meta["synthetic"] is True  # read back from ImageType, so a conversion keeps the mark
    other = write_dicom_series(scan, tmp_path / "synth2", series_description="my own words")
    ds2 = pydicom.dcmread(other / "IM00001.dcm")
    assert ds2.StudyInstanceUID != ds.StudyInstanceUID and ds2.FrameOfReferenceUID != ds.FrameOfReferenceUID
    assert ds2.SeriesDescription == "SYNTHETIC my own words"


def test_float_data_quantised_within_documented_precision(tmp_path):
    block, affine = mni_block()
    values = block / 255.0 * 3.7 - 0.4  # fractional values in [-0.4, 3.3]
    folder = write_dicom_series(make_scan(values[None], affine), tmp_path / "f")
    ds = pydicom.dcmread(folder / "IM00003.dcm")
    assert ds.PixelRepresentation == 1 and float(ds.RescaleSlope) != 1.0
    back = read_dicom(folder)[0].numpy()
    bound = (values.max() - values.min()) / 65534 / 2
    assert np.abs(back - values).max() <= bound * 1.01 + 1e-6


def test_unsigned_integer_range_written_as_uint16_exactly(tmp_path, stored, oblique_lps):
    values = (stored.astype(np.int32) + 1000) * 20  # 0 .. 59980: beyond int16
    folder = write_dicom_series(make_scan(values[None], LPS_TO_RAS @ oblique_lps), tmp_path / "u")
    assert pydicom.dcmread(folder / "IM00001.dcm").PixelRepresentation == 0
    np.testing.assert_array_equal(read_dicom(folder)[0].numpy(), values)


def test_write_refuses_existing_output_input_and_bad_scans(tmp_path, stored, oblique_lps):
    scan = make_scan(stored[None], LPS_TO_RAS @ oblique_lps)
    out = write_dicom_series(scan, tmp_path / "o")
    with pytest.raises(ScanWriteError, match="already exists"):
        write_dicom_series(scan, out)
    with pytest.raises(ScanWriteError, match="same as an input"):
        write_dicom_series(scan, out, overwrite=True, inputs=[out])
    write_dicom_series(scan * 0 + 1, out, overwrite=True)
    assert read_dicom(out)[0].max() == 1 and len(list(out.iterdir())) == SHAPE[2]
    assert [p.name for p in tmp_path.iterdir()] == ["o"]  # no temporaries left behind
    with pytest.raises(ScanWriteError, match="one channel"):
        write_dicom_series(make_scan(np.zeros((2, *SHAPE)), np.eye(4)), tmp_path / "c")
    sheared = np.eye(4)
    sheared[0, 1] = 0.3
    with pytest.raises(ScanWriteError, match="in-plane shear"):
        write_dicom_series(make_scan(stored[None], sheared), tmp_path / "s")
    with pytest.raises(ScanWriteError, match="dtype"):
        write_dicom_series(scan, tmp_path / "d", dtype="float32")
