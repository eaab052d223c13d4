"""Noise simulation and noise-level estimation on the real MNI152 T1."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from medgen.enhance.noise import (
    add_gaussian,
    add_rician,
    estimate_sigma,
    guess_noise_model,
    rayleigh_background_sigma,
)
from medgen.enhance.self_supervised import neighbor_indices, subsample
from medgen.errors import MedgenWarning, ScanValueError


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


def _coil_magnitude(clean: np.ndarray, sigma: float, coils: int, rng: np.random.Generator) -> np.ndarray:
    """Sum-of-squares magnitude of ``coils`` channels with noise ``sigma`` each (non-central chi, 2N dof)."""
    channels = rng.normal(0.0, sigma, (2 * coils, *clean.shape))
    channels[0] += clean
    return np.sqrt((channels**2).sum(0)).astype(np.float32)


def test_estimate_sigma_leaves_out_an_eight_coil_noise_floor(mni_crop):
    # the crop with as much pure background beside it: the floor sits at ~3.9 sigma, above a fixed 4-sigma cut
    # of the first estimate, whose spread (0.8 sigma) pulled the old estimate 20-25 % low
    clean = np.concatenate([np.zeros_like(mni_crop[0].numpy()), mni_crop[0].numpy()], axis=0)
    sigma = 0.05 * clean.max()
    noisy = _coil_magnitude(clean, sigma, 8, np.random.default_rng(2))
    assert estimate_sigma(noisy) == pytest.approx(sigma, rel=0.1)


def test_a_rayleigh_background_gives_the_level_where_voxel_scale_anatomy_inflates_the_wavelet_estimate(mni_crop):
    # tissue with detail at the voxel scale (a coarse scan's anatomy), beside pure background
    tissue = mni_crop[0].numpy()
    sigma = 0.05 * tissue.max()
    detail = np.random.default_rng(7).normal(0, 0.6 * sigma, tissue.shape) * (tissue > 0.2 * tissue.max())
    clean = np.concatenate([np.zeros_like(tissue), tissue + detail], axis=0)
    noisy = add_rician(clean, sigma, np.random.default_rng(3))
    assert rayleigh_background_sigma(noisy, 1.2 * sigma) == pytest.approx(sigma, rel=0.05)
    assert estimate_sigma(noisy) == pytest.approx(sigma, rel=0.05)
    # without the background the wavelet estimate alone sees the detail as noise
    assert estimate_sigma(noisy[tissue.shape[0]:]) > 1.1 * sigma
    # a masked (zero-filled) background is no noise background: no answer, never a guess
    masked = np.where(clean > 0, noisy, 0.0)
    assert rayleigh_background_sigma(masked, sigma) is None


@pytest.mark.parametrize("case", ["zeros", "constant", "tiny"])
def test_estimate_sigma_refuses_a_scan_without_enough_varying_voxels(mni_crop, case):
    volume = {"zeros": np.zeros((32, 32, 32)), "constant": np.full((32, 32, 32), 7.0),
              "tiny": mni_crop[0].numpy()[:6, :6, :6]}[case]
    with pytest.raises(ScanValueError, match="noise level cannot be estimated.*blocks vary"):
        estimate_sigma(volume)


def test_estimate_sigma_refuses_nan_voxels(noisy_crop):
    volume = noisy_crop[0][0].numpy().copy()
    volume[3, 4, 5] = np.nan
    with pytest.raises(ScanValueError, match="1 voxels are NaN or Inf"):
        estimate_sigma(volume)
    assert np.isnan(volume[3, 4, 5])  # the input is left as it was


def test_estimate_sigma_warns_when_only_background_is_left():
    noise = add_rician(np.zeros((16, 16, 16), np.float32), 10.0, np.random.default_rng(0))
    with pytest.warns(MedgenWarning, match="estimated from the background"):
        estimate_sigma(noise)
