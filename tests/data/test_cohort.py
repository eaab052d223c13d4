"""The simulated cohort: deterministic, varied like real subjects, labels aligned, invertible warps."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from medgen.data import SimulatedDataset, brain_cohort, mni152, simulate_subject
from medgen.data.cohort import _anatomy, tissue_volumes_ml
from medgen.data.deform import DeformationParams, displacement, jacobian_determinant, sampling_positions
from medgen.errors import DataError


def _dice(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(2 * (a & b).sum() / (a.sum() + b.sum()))


def test_same_seed_same_subject_other_seed_other_subject():
    a, b, c = simulate_subject(11), simulate_subject(11), simulate_subject(12)
    assert torch.equal(a["image"], b["image"]) and torch.equal(a["label"], b["label"])
    assert not torch.equal(a["image"], c["image"])
    assert float((a["label"] != c["label"]).float().mean()) > 0.01


def test_subjects_differ_from_template_but_remain_brains(cohort3):
    template = mni152(3)["label"][0]
    for subject in cohort3:
        label = subject["label"][0]
        brain_dice = _dice(label > 0, template > 0)
        assert 0.8 < brain_dice < 0.995  # moved and resized, but the same organ
        assert set(label.unique().tolist()) == {0, 1, 2, 3}


def test_item_structure_and_metadata(cohort3):
    for i, s in enumerate(cohort3):
        assert set(s) == {"image", "label", "subject_id"} and s["subject_id"] == f"sub-{i:03d}"
        assert s["image"].dtype == torch.float32 and s["label"].dtype == torch.uint8
        assert s["image"].shape == s["label"].shape == (1, 66, 78, 63)
        assert torch.equal(s["image"].affine, s["label"].affine)
        assert s["image"].meta["synthetic"] is True and s["image"].meta["modality"] == "MR"
        assert s["image"].meta["provenance"][-1]["operation"] == "simulate-brain"


@pytest.mark.parametrize("contrast,order", [("t1", (1, 2, 3)), ("t2", (3, 2, 1)), ("pd", (3, 2, 1))])
def test_labels_stay_aligned_with_tissue_intensities(contrast, order):
    """Per-label means re-derived on each subject follow the contrast's tissue order."""
    for seed in range(3):
        s = simulate_subject(seed, 3, contrast)
        image, label = s["image"][0], s["label"][0]
        means = {k: float(image[label == k].mean()) for k in range(4)}
        lo, mid, hi = (means[k] for k in order)
        assert lo < mid < hi, (contrast, seed, means)
        assert means[0] < 0.5 * min(means[1], means[2], means[3])  # background is dark


@pytest.mark.parametrize("strength", [1.0, 2.0])
def test_deformations_are_invertible(strength):
    anatomy = _anatomy(3)
    shape = tuple(anatomy.maps.shape[1:])
    for seed in range(4):
        params = DeformationParams.draw(np.random.default_rng(seed), strength=strength)
        positions = sampling_positions(params, shape, 3.0, anatomy.ventricles, anatomy.centre)
        jac = jacobian_determinant(displacement(positions, shape))
        assert float(jac.min()) > 0.0, (seed, float(jac.min()))
        assert 0.7 < float(jac.mean()) < 1.4


def test_tissue_volumes_vary_like_an_adult_cohort():
    cohort = brain_cohort(10, resolution=3, seed=3, noise=0.0)
    volumes = np.array([list(tissue_volumes_ml(s["label"], (3, 3, 3)).values()) for s in cohort])
    cv = volumes.std(0) / volumes.mean(0)
    assert np.all(cv > 0.02) and np.all(cv < 0.25), cv


def test_contrast_random_and_bad_contrast():
    contrasts = {s["image"].meta["contrast"] for s in brain_cohort(8, seed=1, contrast="random", blur=False)}
    assert len(contrasts) >= 2
    with pytest.raises(DataError, match="contrast"):
        simulate_subject(0, contrast="flair")


def test_zero_deformation_keeps_template_anatomy():
    s = simulate_subject(5, 3, deformation=0.0, noise=0.0)
    assert torch.equal(s["label"].as_tensor(), mni152(3)["label"].as_tensor())


def test_lazy_dataset_gives_the_cohort_subjects(cohort3):
    ds = SimulatedDataset(simulate_subject, 4, seed=0, resolution=3, contrast="t1")
    assert len(ds) == 4
    item = ds[2]
    assert item["subject_id"] == "sub-002" and torch.equal(item["image"], cohort3[2]["image"])
    with pytest.raises(IndexError):
        ds[4]
