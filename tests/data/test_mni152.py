"""The real MNI152 template: files, geometry of the 2/3 mm versions, tissue labels."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from medgen.data import mni152, mni152_files
from medgen.errors import DataError


def test_template_files_come_from_nilearn_install():
    files = mni152_files()
    assert set(files) == {"t1", "gm", "wm"}
    assert all(p.is_file() and "nilearn" in str(p) for p in files.values())


@pytest.mark.parametrize("resolution,shape", [(1, (197, 233, 189)), (2, (99, 117, 95)), (3, (66, 78, 63))])
def test_resolutions_share_world_coordinates(resolution, shape):
    t = mni152(resolution)
    assert set(t) == {"image", "label", "csf", "gm", "wm"}
    assert tuple(t["image"].shape) == (1, *shape) and tuple(t["label"].shape) == (1, *shape)
    assert t["label"].dtype == torch.uint8 and t["image"].dtype == torch.float32
    one = mni152(1)["image"].affine.numpy()
    # coarse voxel 0 is the centre of the first r^3 block of 1 mm voxels
    centre_1mm = one @ np.array([(resolution - 1) / 2] * 3 + [1.0])
    assert np.allclose(t["image"].affine.numpy() @ [0, 0, 0, 1], centre_1mm)
    assert np.allclose(t["image"].meta["spacing"], [resolution] * 3)


def test_tissue_labels_match_t1_intensities_and_volumes():
    t = mni152(2)
    image, label = t["image"][0], t["label"][0]
    means = [float(image[label == k].mean()) for k in range(4)]
    assert means[0] < means[1] < means[2] < means[3]  # background < CSF < GM < WM on a T1
    volumes_ml = [float((label == k).sum()) * 8 / 1000 for k in (1, 2, 3)]
    assert 50 < volumes_ml[0] < 400 and 800 < volumes_ml[1] < 1400 and 450 < volumes_ml[2] < 800
    probs = torch.cat([t["csf"], t["gm"], t["wm"]])
    assert float(probs.min()) >= 0 and float(probs.sum(0).max()) <= 1.0 + 1e-5


def test_returns_copies_not_the_cache():
    t = mni152(3)
    t["image"].zero_()
    assert float(mni152(3)["image"].max()) > 100


def test_unknown_resolution_is_a_one_line_error():
    with pytest.raises(DataError, match="resolution"):
        mni152(4)
