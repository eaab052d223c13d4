"""Noise simulation and noise-level estimation on the real MNI152 T1."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from medgen.enhance.noise import add_gaussian, add_rician, estimate_sigma, guess_noise_model
from medgen.enhance.self_supervised import neighbor_indices, subsample


@pytest.mark.parametrize("fraction", [0.03, 0.05, 0.09])
@pytest.mark.parametrize("model", ["rician", "gaussian"])
def test_estimate_sigma_recovers_simulated_noise_level(mni_crop, fraction, model):
    clean = mni_crop[0].numpy()
    sigma = fraction * clean.max()
    add = add_rician if model == "rician" else add_gaussian
    noisy = add(clean, sigma, np.random.default_rng(1))
    assert estimate_sigma(noisy) == pytest.approx(sigma, rel=0.15)


def test_rician_noise_is_biased_upward_in_dark_tissue_and_nonnegative(mni_crop):
    clean = mni_crop[0].numpy()
    noisy = add_rician(clean, 0.09 * clean.max(), np.random.default_rng(0))
    assert noisy.min() >= 0
    dark = clean < np.percentile(clean, 10)
    assert noisy[dark].mean() > clean[dark].mean()


def test_noise_model_guess_follows_modality_and_sign():
    assert guess_noise_model(np.zeros(3), "CT", "HU") == "gaussian"
    assert guess_noise_model(np.array([0.0, 5.0]), "MR") == "rician"
    assert guess_noise_model(np.array([-1.0, 5.0])) == "gaussian"


def test_neighbor_split_picks_distinct_face_neighbours_of_each_cell():
    volume = torch.arange(4 * 4 * 4, dtype=torch.float32).reshape(1, 1, 4, 4, 4)
    first, second = neighbor_indices(tuple(volume.shape), torch.Generator().manual_seed(0))
    g1, g2 = subsample(volume, first), subsample(volume, second)
    diff = (g1 - g2).abs()
    # face neighbours in a C-ordered 4x4x4 grid differ by 1 (z), 4 (y) or 16 (x)
    assert set(diff.unique().tolist()) <= {1.0, 4.0, 16.0}
    assert g1.shape == (1, 1, 2, 2, 2)
