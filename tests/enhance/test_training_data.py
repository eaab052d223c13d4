"""Training volumes of the shipped enhancement networks: crop corners and on-device crops."""

from __future__ import annotations

import numpy as np
import torch

from medgen.data.phantom import ct_phantom
from medgen.enhance.training_data import Source, crop_starts, flip_and_permute, random_contrast, random_crop


def test_crop_starts_are_exactly_the_windows_holding_the_asked_share_of_the_body():
    body = ct_phantom(seed=3, shape=(40, 40, 30), spacing=(9.6, 9.6, 9.6), noise=0)["label"][0].numpy() > 0
    starts = crop_starts(body, (12, 10, 8), 0.3)
    share = np.lib.stride_tricks.sliding_window_view(body, (12, 10, 8)).mean(axis=(-3, -2, -1))
    np.testing.assert_array_equal(starts, np.argwhere(share > 0.3))
    assert 0 < len(starts) < share.size


def test_crops_of_a_real_volume_keep_their_voxels_through_flips_and_contrast(mni_crop):
    t1 = mni_crop[0] / 255.0
    parts = [t1 <= 0.4, (t1 > 0.4) & (t1 <= 0.7), t1 > 0.7]  # stand-in tissue maps that add up to one
    chans = torch.stack([t1, *parts]).float()
    src = Source("mr", chans, torch.from_numpy(crop_starts(np.ones(t1.shape, bool), (16, 16, 16), 0.5)))
    gen = torch.Generator().manual_seed(0)
    crop = random_crop(src, (16, 16, 16), gen)
    assert crop.shape == (4, 16, 16, 16)
    moved = flip_and_permute(crop[0], gen)
    assert moved.shape == (16, 16, 16)
    np.testing.assert_allclose(np.sort(moved.flatten().numpy()), np.sort(crop[0].flatten().numpy()))
    img = random_contrast(crop, gen)
    assert img.shape == (16, 16, 16) and 0.0 <= float(img.min()) and float(img.max()) <= 1.2 + 1e-6
