"""NIfTI and NRRD/MHA/MHD round trips keep world geometry, integer values and provenance."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk
import torch

from medgen.errors import MedgenWarning, ScanWriteError
from medgen.io import load_scan, mark, save_scan
from medgen.io.meta import make_scan
from tests.conftest import oblique_affine

FORMATS = ["nii", "nii.gz", "nrrd", "mha", "mhd"]
ORIENTATIONS = {
    "RAS": np.diag([1.0, 1.0, 1.0, 1.0]),
    "LPS": np.diag([-1.0, -1.0, 1.0, 1.0]),
    "LIA-ish oblique": oblique_affine(20.0, flips=(-1, -1, 1)),
    "oblique": oblique_affine(35.0),
}


@pytest.fixture()
def labels(mni_block):
    """A real tissue-like integer map: MNI intensities binned into labels 0..3."""
    return torch.bucketize(mni_block, torch.tensor([30.0, 90.0, 150.0])).to(torch.uint8)


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("orient", list(ORIENTATIONS))
def test_round_trip_keeps_affine_and_integer_labels(tmp_path, labels, fmt, orient):
    affine = ORIENTATIONS[orient]
    scan = make_scan(labels, affine, dtype=None)
    path = save_scan(scan, tmp_path / f"labels.{fmt}")
    back = load_scan(path)
    assert np.abs(back.affine.numpy() - affine).max() < 1e-4
    assert torch.equal(back[0], labels[0].float()), "integer labels must come back exactly"
    assert back.meta["original_orientation"] == "".join(nib.aff2axcodes(affine))


def test_nifti_labels_stored_as_integers_with_unit_scaling(tmp_path, labels):
    path = save_scan(make_scan(labels.float() + 0.0, np.eye(4)), tmp_path / "l.nii.gz", dtype="int16")
    img = nib.load(str(path))
    assert img.get_data_dtype() == np.int16
    slope, inter = img.header.get_slope_inter()
    assert slope in (None, 1.0) and inter in (None, 0.0)
    assert set(np.unique(np.asanyarray(img.dataobj))) <= {0, 1, 2, 3}


def test_float_scan_round_trip_is_exact_in_float32(tmp_path, mni_block):
    scan = mni_block * 0.37 + 1.5
    for fmt in ("nii.gz", "nrrd"):
        back = load_scan(save_scan(scan, tmp_path / f"f.{fmt}"))
        assert torch.equal(back.as_tensor(), scan.as_tensor())


@pytest.mark.parametrize("fmt", ["nii.gz", "nrrd", "mha"])
def test_other_libraries_see_the_same_geometry(tmp_path, mni_block, fmt):
    affine = oblique_affine(25.0)
    path = save_scan(make_scan(mni_block, affine), tmp_path / f"g.{fmt}")
    image = sitk.ReadImage(str(path))
    lps = np.asarray(image.GetDirection()).reshape(3, 3) * np.asarray(image.GetSpacing())
    ras = np.diag([-1.0, -1.0, 1.0]) @ lps
    assert np.abs(ras - affine[:3, :3]).max() < 1e-4
    assert np.abs(np.diag([-1.0, -1.0, 1.0]) @ np.asarray(image.GetOrigin()) - affine[:3, 3]).max() < 1e-4
    if fmt.startswith("nii"):
        assert np.abs(nib.load(str(path)).affine - affine).max() < 1e-4


def test_real_mni_template_reads_with_its_geometry(mni_t1_path):
    scan = load_scan(mni_t1_path)
    assert scan.shape == (1, 197, 233, 189) and scan.dtype == torch.float32
    assert scan.meta["spacing"] == (1.0, 1.0, 1.0)
    assert np.allclose(scan.affine[:3, 3].numpy(), [-98, -134, -72])
    assert scan.meta["format"] == "nifti"


def test_multichannel_volume_round_trips(tmp_path, mni_block):
    two = torch.cat([mni_block, mni_block * 2], 0)
    for fmt in ("nii.gz", "nrrd"):
        back = load_scan(save_scan(make_scan(two, np.eye(4)), tmp_path / f"mc.{fmt}"))
        assert back.shape == two.shape and torch.allclose(back.as_tensor(), two.as_tensor())


def test_synthetic_scan_is_marked_in_header_and_sidecar(tmp_path, mni_block):
    scan = mark(mni_block, "synthesize", synthetic=True, model="gan-test", seed=7)
    path = save_scan(scan, tmp_path / "syn.nii.gz")
    assert b"SYNTHETIC" in nib.load(str(path)).header["descrip"].tobytes()
    sidecar = json.loads((tmp_path / "syn.json").read_text())
    assert sidecar["synthetic"] is True and sidecar["provenance"][-1]["seed"] == 7
    back = load_scan(path)
    assert back.meta["synthetic"] and back.meta["provenance"][-1]["model"] == "gan-test"
    nrrd = load_scan(save_scan(scan, tmp_path / "syn.nrrd"))
    assert nrrd.meta["synthetic"] and nrrd.meta["provenance"][-1]["operation"] == "synthesize"


@pytest.mark.parametrize("synthetic", [True, False])
def test_unreadable_nrrd_provenance_never_reads_back_as_acquired(tmp_path, mni_block, synthetic):
    scan = mark(mni_block, "synthesize" if synthetic else "denoise", synthetic=synthetic, model="m")
    path = save_scan(scan, tmp_path / "scan.nrrd")
    text = path.read_bytes()
    start = text.index(b"medgen:={") + len(b"medgen:=")
    path.write_bytes(text[:start] + b"{broken" + text[start + 7:])  # same length: the data offset holds
    with pytest.warns(MedgenWarning, match=f"{path}: medgen provenance in the header is unreadable"):
        back = load_scan(path)
    assert back.meta["synthetic"] is synthetic  # from the plain-text summary key
    path.write_bytes(path.read_bytes().replace(b"medgen_summary:=medgen", b"medgen_summary:=xxxxxx"))
    with pytest.warns(MedgenWarning, match="treated as synthetic"):
        assert load_scan(path).meta["synthetic"] is True  # no summary either: assume the worst


def test_synthetic_nifti_stays_synthetic_without_a_readable_sidecar(tmp_path, mni_block):
    path = save_scan(mark(mni_block, "synthesize", synthetic=True, model="m"), tmp_path / "syn.nii.gz")
    sidecar = tmp_path / "syn.json"
    sidecar.write_text("{not json")
    with pytest.warns(MedgenWarning, match=f"{sidecar}: sidecar ignored"):
        assert load_scan(path).meta["synthetic"] is True  # from the header's descrip
    sidecar.unlink()
    back = load_scan(path)
    assert back.meta["synthetic"] is True and back.meta["provenance"][-1]["summary"].startswith("medgen SYNTHETIC")


def test_existing_output_is_kept_unless_overwrite(tmp_path, mni_block):
    path = save_scan(mni_block, tmp_path / "a.nii.gz")
    before = path.read_bytes()
    with pytest.raises(ScanWriteError, match="already exists"):
        save_scan(mni_block * 2, path)
    assert path.read_bytes() == before
    save_scan(mni_block * 2, path, overwrite=True)
    assert load_scan(path).max() == pytest.approx(float(mni_block.max() * 2))


def test_output_equal_to_input_is_refused_even_with_overwrite(tmp_path, mni_block):
    path = save_scan(mni_block, tmp_path / "a.nrrd")
    with pytest.raises(ScanWriteError, match="same as an input"):
        save_scan(mni_block, path, overwrite=True, inputs=[path])


def test_failed_write_leaves_no_temporary(tmp_path, mni_block):
    with pytest.raises(ScanWriteError, match="do not fit"):
        save_scan(mni_block * 1000, tmp_path / "big.nii.gz", dtype="uint8")
    with pytest.raises(ScanWriteError, match="unsupported output format"):
        save_scan(mni_block, tmp_path / "x.png")
    assert list(tmp_path.iterdir()) == []


def test_modality_and_units_survive_a_nifti_round_trip(tmp_path, mni_block):
    ct = make_scan(mni_block * 4 - 1000, np.eye(4), modality="CT", units="HU", series_description="abdomen")
    back = load_scan(save_scan(ct, tmp_path / "ct.nii.gz"))
    assert (back.meta["modality"], back.meta["units"], back.meta["series_description"]) == ("CT", "HU", "abdomen")
    assert back.meta["synthetic"] is False
