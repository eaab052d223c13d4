"""CT phantoms: plausible HU per organ, lesions with tight MONAI boxes, deterministic by seed."""

from __future__ import annotations

import pytest
import torch

from medgen.data import ct_phantom
from medgen.data.phantom import LABELS

HU_RANGES = {"air": (-1001, -900), "fat": (-150, -30), "soft_tissue": (0, 70), "lung": (-900, -650),
             "liver": (35, 85), "kidney": (10, 60), "bone": (150, 1000)}


def test_structure_and_metadata(phantoms):
    for i, p in enumerate(phantoms):
        assert set(p) == {"image", "label", "lesion_mask", "boxes", "box_labels", "subject_id"}
        assert p["subject_id"] == f"sub-{i:03d}"
        assert p["image"].shape == p["label"].shape == p["lesion_mask"].shape == (1, 64, 64, 48)
        assert p["label"].dtype == p["lesion_mask"].dtype == torch.uint8
        assert p["boxes"].dtype == torch.float32 and p["boxes"].shape[1] == 6
        assert p["box_labels"].dtype == torch.int64 and torch.all(p["box_labels"] == 0)
        assert p["image"].meta["units"] == "HU" and p["image"].meta["modality"] == "CT"
        assert p["image"].meta["synthetic"] is True


def test_organ_hu_are_plausible(phantoms):
    for p in phantoms:
        image, label = p["image"][0], p["label"][0]
        for name, (lo, hi) in HU_RANGES.items():
            voxels = image[label == LABELS[name]]
            assert len(voxels) > 20, name
            assert lo < float(voxels.median()) < hi, (name, float(voxels.median()))


def test_boxes_are_tight_around_each_lesion(phantoms):
    for p in phantoms:
        instances = p["lesion_mask"][0]
        n = len(p["boxes"])
        assert 2 <= n <= 6 and int(instances.max()) == n
        assert torch.equal(p["label"][0] == LABELS["lesion"], instances > 0)
        for k, box in enumerate(p["boxes"], start=1):
            idx = torch.nonzero(instances == k)
            expected = torch.cat([idx.min(0).values, idx.max(0).values + 1]).float()
            assert torch.equal(box, expected)  # xyzxyz, voxel coordinates, end exclusive


def test_lesions_contrast_with_their_surroundings(phantoms):
    p = phantoms[0]
    image, instances = p["image"][0], p["lesion_mask"][0]
    for lesion, k in zip(p["image"].meta["lesions"], range(1, 99)):
        host = float(p["image"].meta["lesions"][k - 1]["hu"])
        assert abs(float(image[instances == k].mean()) - host) < abs(host - (-1000))  # not air
        assert lesion["organ"] in {"lung", "liver", "spleen", "kidney"}


def test_deterministic_and_configurable():
    a, b = ct_phantom(4, noise=0.0), ct_phantom(4, noise=0.0)
    assert torch.equal(a["image"], b["image"]) and torch.equal(a["boxes"], b["boxes"])
    assert not torch.equal(a["image"], ct_phantom(5, noise=0.0)["image"])
    small = ct_phantom(4, shape=(32, 32, 24), spacing=(12.0, 12.0, 12.0), n_lesions=(0, 0))
    assert small["image"].shape == (1, 32, 32, 24) and small["boxes"].shape == (0, 6)
    assert small["image"].meta["spacing"] == pytest.approx((12.0, 12.0, 12.0))
