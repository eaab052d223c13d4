"""Fixtures for enhancement tests: real MNI152 crops, clean and with simulated noise."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
import torch

from medgen.enhance.noise import add_rician
from medgen.io.meta import make_scan


@pytest.fixture(scope="session", autouse=True)
def _one_thread():
    """One thread: fastest and deterministic on the shared 2-core test machines."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def mni_crop(mni_t1_path) -> torch.Tensor:
    """A real 32³ crop of the 1 mm MNI152 T1 through the ventricles (0-255 units), RAS affine."""
    img = nib.load(str(mni_t1_path))
    data = np.asarray(img.dataobj, dtype=np.float32)
    start = np.array([82, 100, 78])
    crop = data[tuple(slice(s, s + 32) for s in start)]
    affine = img.affine.copy()
    affine[:3, 3] = img.affine[:3, :3] @ start + img.affine[:3, 3]
    return make_scan(crop[None], affine, modality="MR")


@pytest.fixture(scope="session")
def noisy_crop(mni_crop) -> tuple[torch.Tensor, float]:
    """``(scan, sigma)``: the crop with Rician noise of 5 % of its maximum (seed 0)."""
    sigma = 0.05 * float(mni_crop.max())
    noisy = add_rician(mni_crop[0].numpy(), sigma, np.random.default_rng(0))
    return make_scan(noisy[None], mni_crop.affine.numpy(), modality="MR"), sigma
