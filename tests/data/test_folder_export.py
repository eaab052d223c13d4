"""Export → load_folder round trips, and users' own folders giving the same list of dicts."""

from __future__ import annotations

import json

import pytest
import torch
from monai.data import load_decathlon_datalist
from monai.transforms import LoadImaged

from medgen.data import brain_cohort, ct_cohort, export_dataset, load_folder
from medgen.errors import DataError, ScanWriteError
from medgen.io import save_scan


def _same(a: dict, b: dict) -> None:
    assert set(a) == set(b)
    for key in a:
        if isinstance(a[key], torch.Tensor):
            assert a[key].dtype == b[key].dtype and torch.equal(torch.as_tensor(a[key]), torch.as_tensor(b[key])), key
            if hasattr(a[key], "affine"):
                assert torch.allclose(a[key].affine, b[key].affine)
        else:
            assert a[key] == b[key], key


def test_brain_export_reads_back_as_the_cohort(tmp_path):
    items = export_dataset(tmp_path / "brain", kind="brain", n_subjects=2, resolution=3, seed=7)
    assert [set(it) for it in items] == [{"image", "label", "subject_id"}] * 2
    assert all(isinstance(it["image"], str) for it in items)
    for loaded, generated in zip(load_folder(tmp_path / "brain", load=True), brain_cohort(2, 3, seed=7)):
        _same(loaded, generated)
        assert loaded["image"].meta["synthetic"] is True


def test_ct_export_reads_back_with_boxes(tmp_path):
    export_dataset(tmp_path / "ct", kind="ct", n_subjects=2, seed=3)
    for loaded, generated in zip(load_folder(tmp_path / "ct", load=True), ct_cohort(2, seed=3)):
        _same(loaded, generated)
    info = json.loads((tmp_path / "ct" / "dataset.json").read_text())
    assert info["box_mode"] == "xyzxyz" and info["box_coordinates"] == "voxel"


def test_export_is_a_monai_datalist(tmp_path):
    items = export_dataset(tmp_path / "d", n_subjects=2, seed=1)
    datalist = load_decathlon_datalist(str(tmp_path / "d" / "dataset.json"), base_dir=str(tmp_path / "d"))
    assert [d["image"] for d in datalist] == [it["image"] for it in items]
    loaded = LoadImaged(["image", "label"], ensure_channel_first=True)(datalist[0])
    assert loaded["image"].shape == (1, 66, 78, 63) and set(loaded["label"].unique().tolist()) == {0, 1, 2, 3}


def test_export_never_overwrites_by_accident(tmp_path):
    export_dataset(tmp_path / "d", n_subjects=1)
    with pytest.raises(ScanWriteError, match="overwrite"):
        export_dataset(tmp_path / "d", n_subjects=1)
    assert len(export_dataset(tmp_path / "d", n_subjects=2, overwrite=True)) == 2


def test_user_folders_with_separate_or_suffixed_labels(tmp_path, cohort3):
    images, labels, mixed = tmp_path / "images", tmp_path / "labels", tmp_path / "mixed"
    for s in cohort3[:2]:
        save_scan(s["image"], images / f"{s['subject_id']}.nrrd")
        save_scan(s["label"], labels / f"{s['subject_id']}_seg.nii.gz")
        save_scan(s["image"], mixed / f"{s['subject_id']}.nii.gz")
        save_scan(s["label"], mixed / f"{s['subject_id']}_label.nii.gz")
    for items in (load_folder(images, labels, load=True), load_folder(mixed, load=True)):
        assert [it["subject_id"] for it in items] == ["sub-000", "sub-001"]
        for loaded, generated in zip(items, cohort3):
            assert set(loaded) == set(generated)
            assert torch.equal(loaded["label"].as_tensor(), generated["label"].as_tensor())
            assert torch.allclose(loaded["image"].as_tensor(), generated["image"].as_tensor())
    only_images = load_folder(images)
    assert [set(it) for it in only_images] == [{"image", "subject_id"}] * 2


def test_bad_folders_are_one_line_errors(tmp_path, cohort3):
    with pytest.raises(DataError, match="no such folder"):
        load_folder(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no scans"):
        load_folder(tmp_path / "empty")
    save_scan(cohort3[0]["image"], tmp_path / "half" / "a.nii.gz")
    save_scan(cohort3[0]["image"], tmp_path / "half" / "b.nii.gz")
    save_scan(cohort3[0]["label"], tmp_path / "half" / "a_label.nii.gz")
    with pytest.raises(DataError, match="no label for image 'b'") as err:
        load_folder(tmp_path / "half")
    assert "\n" not in str(err.value)
