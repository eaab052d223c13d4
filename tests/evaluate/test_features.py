"""FID/MMD on the shipped feature network, and loading a user's MedicalNet-style weights file."""

from __future__ import annotations

import pytest
import torch

from medgen.errors import DataError
from medgen.evaluate.features import fid, load_feature_extractor, mmd


def _noisy(scan: torch.Tensor, sigma: float, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (scan.as_tensor() + sigma * torch.randn(scan.shape, generator=g)).abs()


def test_fid_and_mmd_of_identical_feature_sets_are_zero(cohort_a):
    extractor = load_feature_extractor()
    feats = extractor([s["image"] for s in cohort_a[:6]])
    assert feats.shape == (6, 128)
    assert fid(feats, feats.clone()) == pytest.approx(0.0, abs=1e-6)
    assert mmd(feats, feats.clone()) == pytest.approx(0.0, abs=1e-9)


def test_fid_grows_with_noise_level_and_other_subjects_stay_close(cohort_a, cohort_b):
    extractor = load_feature_extractor()
    assert "self-supervised" in extractor.name
    real = extractor([s["image"] for s in cohort_a[:6]])
    others = extractor([s["image"] for s in cohort_b])
    light = extractor([_noisy(s["image"], 0.04, i) for i, s in enumerate(cohort_b)])
    heavy = extractor([_noisy(s["image"], 0.12, i) for i, s in enumerate(cohort_b)])
    f_other, f_light, f_heavy = fid(real, others), fid(real, light), fid(real, heavy)
    assert f_other < f_light < f_heavy
    assert mmd(real, others) < mmd(real, heavy)


def test_a_medicalnet_style_pth_file_is_loaded_by_its_keys(tmp_path, cohort_a):
    from monai.networks.nets import resnet10

    net = resnet10(spatial_dims=3, n_input_channels=1, shortcut_type="B", bias_downsample=False, feed_forward=False)
    path = tmp_path / "resnet_10.pth"
    torch.save({"state_dict": {f"module.{k}": v for k, v in net.state_dict().items()}}, path)
    extractor = load_feature_extractor(path)
    assert "ResNet-10 3D" in extractor.name and "MedicalNet" in extractor.name
    feats = extractor([s["image"] for s in cohort_a[:2]])
    assert feats.shape == (2, 512) and torch.isfinite(feats).all()


def test_a_file_that_is_not_a_resnet_is_refused_with_its_name(tmp_path):
    path = tmp_path / "weights.pth"
    torch.save({"foo": torch.zeros(3)}, path)
    with pytest.raises(DataError, match="weights.pth: not a ResNet"):
        load_feature_extractor(path)
    with pytest.raises(DataError, match="no such"):
        load_feature_extractor(tmp_path / "missing.pth")
