"""The one robust intensity range: 0.5/99.5 percentiles of a real MNI152 T1, the same from an array or a tensor."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
import torch

from medgen.intensity import robust_range


@pytest.fixture(scope="module")
def noisy_t1(mni_t1_path) -> np.ndarray:
    """The whole 1 mm MNI152 T1 (7.2 M voxels) with Gaussian noise, so its percentiles fall between voxels."""
    t1 = np.asarray(nib.load(str(mni_t1_path)).dataobj, dtype=np.float32)
    return t1 + np.random.default_rng(0).normal(0.0, 3.0, t1.shape).astype(np.float32)


def test_robust_range_is_the_linear_percentile_of_arrays_and_tensors(noisy_t1):
    low, high = robust_range(noisy_t1)
    assert (low, high) == tuple(np.percentile(noisy_t1, [0.5, 99.5]))
    assert robust_range(torch.from_numpy(noisy_t1)) == (low, high)
    assert robust_range(noisy_t1, 0.0, 100.0) == (float(noisy_t1.min()), float(noisy_t1.max()))
    # torch.quantile interpolates the same way (linear), in float32: equal to float32 precision
    sample = torch.from_numpy(noisy_t1).flatten()[::4]
    quantiles = torch.quantile(sample, torch.tensor([0.005, 0.995])).tolist()
    assert robust_range(sample) == pytest.approx(quantiles, rel=1e-6, abs=1e-5)
