"""Memorisation audit and intensity / tissue-volume distributions on simulated subjects."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from medgen.evaluate.distributions import (
    compare_volumes,
    foreground_values,
    intensity_distance,
    intensity_tissue_labels,
    tissue_volumes,
)
from medgen.evaluate.privacy import memorisation_audit


def test_audit_flags_a_planted_copy_and_not_distinct_subjects(cohort_a, cohort_b):
    training = [s["image"] for s in cohort_a[:8]]
    g = torch.Generator().manual_seed(0)
    copy = training[3].as_tensor() + 0.02 * torch.randn(training[3].shape, generator=g)
    copy = torch.roll(copy, 1, dims=1)  # a noisy copy, shifted by one voxel (3 mm)
    synthetic = [s["image"] for s in cohort_b[:4]] + [copy]
    names = [f"syn-{i}" for i in range(5)]
    result = memorisation_audit(synthetic, training, synthetic_names=names,
                                training_names=[f"train-{i}" for i in range(8)])
    assert result["flagged"] == ["syn-4"]
    assert result["rows"][4]["nearest"] == "train-3"
    assert max(result["reference"]) < result["threshold"] < result["rows"][4]["similarity"]


def test_identical_sets_have_zero_intensity_distance_and_a_gain_is_measured(cohort_a):
    real = [s["image"] for s in cohort_a[:3]]
    same = intensity_distance(real, [r.clone() for r in real])
    assert same["wasserstein"] == pytest.approx(0.0, abs=1e-9) and same["intersection"] == pytest.approx(1.0)
    brighter = intensity_distance(real, [r * 1.2 for r in real])
    mean_fg = float(np.mean(np.concatenate([foreground_values(r) for r in real])))
    assert brighter["wasserstein"] == pytest.approx(0.2 * mean_fg, rel=0.05)
    assert brighter["intersection"] < 0.8


def test_tissue_volumes_are_in_millilitres_and_intensity_classes_track_labels(cohort_a):
    subject = cohort_a[0]
    vols = tissue_volumes(subject["label"])
    lab = subject["label"].numpy()
    assert vols[3] == pytest.approx((lab == 3).sum() * 0.027)  # 3 mm voxels = 0.027 mL
    assert 1000 < sum(vols.values()) < 2000  # an adult brain is ~1.1-1.6 L
    by_intensity = tissue_volumes(intensity_tissue_labels(subject["image"]), subject["image"].affine.numpy())
    assert sorted(by_intensity) == [1, 2, 3]
    assert sum(by_intensity.values()) == pytest.approx(sum(vols.values()), rel=0.25)  # same brain, other split
    rows = compare_volumes([tissue_volumes(s["label"]) for s in cohort_a[:5]],
                           [tissue_volumes(s["label"]) for s in cohort_a[5:]])
    assert [r["tissue"] for r in rows] == ["csf", "gm", "wm"]
    assert all(r["ks"] <= 1 and r["wasserstein_ml"] >= 0 for r in rows)
