"""MR/CT artefact presets: MONAI transforms composed, seeded by set_random_state, metadata and trace kept."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.data import MetaTensor
from monai.transforms import Compose

from medgen.augment import RandCTArtifacts, RandLowDoseCTNoise, RandMRArtifacts, RandMRArtifactsd
from medgen.io import make_scan

ALL_ON = dict(bias_prob=1.0, motion_prob=1.0, ghosting_prob=1.0, spike_prob=1.0, gibbs_prob=1.0,
              low_resolution_prob=1.0, rician_prob=1.0)


def test_mr_preset_applies_every_artifact_and_records_them_with_seed(subject):
    pytest.importorskip("torchio", reason="motion/ghosting come from TorchIO")
    img = subject["image"]
    out = RandMRArtifacts(**ALL_ON).set_random_state(seed=0)(img)
    assert isinstance(out, MetaTensor) and out.dtype == img.dtype and out.shape == img.shape
    assert torch.equal(out.affine, img.affine) and out.meta["modality"] == "MR"
    assert (out - img).abs().mean() > 0.01
    record = out.applied_operations[-1]
    assert record["class"] == "RandMRArtifacts" and isinstance(record["extra_info"]["seed"], int)
    assert record["extra_info"]["artifacts"] == [
        "bias_field", "motion", "ghosting", "spikes", "gibbs", "low_resolution", "rician"]
    assert len(out.applied_operations) == 1  # the inner MONAI/TorchIO steps are not traced separately


def test_mr_preset_is_reproducible_by_seed_and_varies_across_seeds(subject):
    img = subject["image"]
    a = RandMRArtifacts(**ALL_ON).set_random_state(seed=3)(img)
    b = RandMRArtifacts(**ALL_ON).set_random_state(seed=3)(img)
    c = RandMRArtifacts(**ALL_ON).set_random_state(seed=4)(img)
    assert torch.equal(a.as_tensor(), b.as_tensor())
    assert not torch.allclose(a.as_tensor(), c.as_tensor())


def test_torchio_motion_is_seeded_and_leaves_torch_global_rng_alone(subject):
    pytest.importorskip("torchio", reason="motion comes from TorchIO")
    from medgen.augment import RandTorchIOArtifact

    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    a = RandTorchIOArtifact("RandomMotion", degrees=5, translation=5).set_random_state(seed=1)(subject["image"])
    assert torch.equal(torch.rand(3), expected)
    torch.manual_seed(999)  # a different global state must not change the draw
    b = RandTorchIOArtifact("RandomMotion", degrees=5, translation=5).set_random_state(seed=1)(subject["image"])
    assert torch.equal(a.as_tensor(), b.as_tensor()) and isinstance(a, MetaTensor)


def test_dict_preset_changes_images_not_labels_and_inverts_to_identity(subject):
    t = Compose([RandMRArtifactsd(keys="image", **ALL_ON)]).set_random_state(seed=0)
    out = t(subject)
    assert torch.equal(out["label"], subject["label"]) and not out["label"].applied_operations
    assert not torch.equal(out["image"], subject["image"])
    back = t.inverse(out)
    assert back["image"].applied_operations == []  # intensity change: inverse only pops the record


@pytest.mark.parametrize("correlation", [0.0, 0.6])
def test_lowdose_noise_has_the_dose_law_std_at_water_and_less_in_air(correlation):
    hu = np.zeros((1, 40, 40, 40), np.float32)
    hu[:, :, :, 20:] = -1000.0  # half water, half air
    scan = make_scan(hu, np.eye(4), modality="CT", units="HU")
    t = RandLowDoseCTNoise(dose_range=(0.25, 0.25), sigma_full=10.0, correlation=correlation)
    noise = (t.set_random_state(seed=0)(scan) - scan).as_tensor()[0]
    water, air = noise[4:-4, 4:-4, 4:16].std(), noise[4:-4, 4:-4, 24:-4].std()
    expected = 10.0 * np.sqrt(1 / 0.25 - 1)  # quarter dose adds sqrt(3) x the full-dose noise
    assert abs(float(water) / expected - 1) < 0.12
    assert float(air) < 0.3 * float(water)
    assert abs(float(noise[4:-4, 4:-4, 4:16].mean())) < 1.0  # unbiased in HU


def test_ct_preset_keeps_hu_scale_and_metadata():
    hu = np.full((1, 32, 32, 32), -1000.0, np.float32)
    hu[:, 8:24, 8:24, 8:24] = 40.0
    scan = make_scan(hu, np.diag([0.8, 0.8, 2.0, 1.0]), modality="CT", units="HU")
    out = RandCTArtifacts(low_resolution_prob=1.0, noise_prob=1.0, kernel_prob=1.0).set_random_state(seed=0)(scan)
    assert out.meta["units"] == "HU" and torch.equal(out.affine, scan.affine)
    assert abs(float(out[0, 12:20, 12:20, 12:20].mean()) - 40.0) < 10.0
    assert out.applied_operations[-1]["extra_info"]["artifacts"] == ["low_resolution", "low_dose", "kernel"]
