"""Chains across formats keep the world geometry and integer values: NIfTI → DICOM → NIfTI, NIfTI → NRRD → NIfTI."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
import torch

from medgen.io import load_scan, save_scan
from medgen.io.meta import make_scan
from tests.conftest import oblique_affine


@pytest.mark.parametrize("middle", ["dicom_series", "mid.nrrd", "mid.mha"])
@pytest.mark.parametrize(
    "affine",
    [np.diag([1.0, 1.0, 1.0, 1.0]), np.diag([-1.0, -1.0, 1.0, 1.0]), oblique_affine(20.0)],
    ids=["RAS", "LPS", "oblique"],
)
def test_nifti_through_other_format_and_back(tmp_path, mni_block, middle, affine):
    values = torch.round(mni_block).to(torch.int16)  # real MNI intensities, integer-valued
    src = save_scan(make_scan(values, affine, dtype=None), tmp_path / "src.nii.gz")
    mid = load_scan(src)
    mid.meta["modality"] = "MR"
    mid_path = save_scan(mid, tmp_path / middle, dtype="int16")
    back = save_scan(load_scan(mid_path), tmp_path / "back.nii.gz", dtype="int16")
    img = nib.load(str(back))
    assert np.abs(img.affine - affine).max() < 1e-4
    assert np.array_equal(np.asanyarray(img.dataobj), values[0].numpy())


def test_dicom_written_by_medgen_carries_derived_markings_and_source_links(tmp_path, mni_block):
    series = save_scan(make_scan(torch.round(mni_block), oblique_affine(10.0), modality="MR"), tmp_path / "ser")
    first = load_scan(series)
    again = save_scan(first, tmp_path / "ser2")
    import pydicom

    ds = pydicom.dcmread(sorted(again.iterdir())[0])
    assert list(ds.ImageType)[:2] == ["DERIVED", "SECONDARY"]
    assert ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.4"  # MR Image Storage, not Secondary Capture
    assert ds.StudyInstanceUID == first.meta["dicom"]["StudyInstanceUID"]
    assert ds.SeriesInstanceUID != first.meta["dicom"]["SeriesInstanceUID"]
    assert ds.SourceImageSequence[0].ReferencedSOPInstanceUID in first.meta["dicom"]["SOPInstanceUIDs"]
