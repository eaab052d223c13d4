"""The one foreground rule of the metrics, on a simulated 3 mm brain."""

from __future__ import annotations

import numpy as np
import pytest

from medgen.errors import ConfigError
from medgen.evaluate.distributions import foreground_values
from medgen.evaluate.fidelity import foreground_mask


def test_foreground_region_fills_a_dark_cavity_and_voxels_shrug_off_a_hot_voxel(cohort_a):
    image = cohort_a[0]["image"].clone()
    cavity = (slice(28, 38), slice(34, 44), slice(28, 38))
    assert (cohort_a[0]["label"][0][cavity] > 0).all()  # inside the brain
    image[(0, *cavity)] = 0.0
    region, voxels = foreground_mask(image), foreground_mask(image, kind="voxels")
    assert region[cavity].all() and not voxels[cavity].any()
    np.testing.assert_array_equal(foreground_values(image), image[0].numpy()[voxels])
    hot = image.clone()
    hot[0, 5, 5, 5] = 100 * float(image.max())  # one hot voxel outside the head
    assert (foreground_mask(hot, kind="voxels") != voxels).sum() <= 3
    with pytest.raises(ConfigError, match="'region' or 'voxels'"):
        foreground_mask(image, kind="body")
