"""Through-plane super-resolution: world geometry of the finer grid, and SMORE beats cubic."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from medgen.enhance.superres import (
    apply_smore,
    bf16_native,
    fit_smore,
    resample,
    resampled_affine,
    sharp_axes,
    superres,
    superres_array,
    thick_slices,
    training_pairs,
)
from medgen.errors import ConfigError, ScanValueError
from medgen.evaluate.fidelity import foreground_mask, psnr
from medgen.io.meta import make_scan
from tests.conftest import oblique_affine


@pytest.mark.parametrize("factor", [2, 3, 4])
def test_thick_slice_centre_sits_at_the_centre_of_the_thin_slices_it_covers(factor):
    thick_affine = oblique_affine(spacing=(0.9, 1.1, 2.0 * factor))
    scan = make_scan(np.random.default_rng(0).random((1, 6, 5, 4)), thick_affine)
    out = superres(scan, factor=factor, axis=2, method="linear")
    assert out.shape == (1, 6, 5, 4 * factor)
    thin = out.affine.numpy()
    for k in range(4):
        covered = [thin @ [2, 3, k * factor + j, 1] for j in range(factor)]
        np.testing.assert_allclose(np.mean(covered, axis=0), thick_affine @ [2, 3, k, 1], atol=1e-9)
    np.testing.assert_allclose(out.meta["spacing"], (0.9, 1.1, 2.0), atol=1e-9)


def test_spacing_target_gives_the_requested_voxel_size_over_the_same_extent():
    affine = np.diag([1.0, 1.0, 3.0, 1.0])
    scan = make_scan(np.random.default_rng(0).random((1, 8, 8, 6)), affine)
    out = superres(scan, spacing=(1.0, 1.0, 1.0), method="cubic")
    assert out.shape == (1, 8, 8, 18)
    np.testing.assert_allclose(out.meta["spacing"], (1, 1, 1), atol=1e-9)
    # first and last voxel edges in world space are the input's
    edges_in = affine @ [0, 0, -0.5, 1], affine @ [0, 0, 5.5, 1]
    thin = out.affine.numpy()
    np.testing.assert_allclose(thin @ [0, 0, -0.5, 1], edges_in[0], atol=1e-9)
    np.testing.assert_allclose(thin @ [0, 0, 17.5, 1], edges_in[1], atol=1e-9)


def test_resampled_affine_is_identity_for_the_same_grid():
    a = oblique_affine()
    np.testing.assert_allclose(resampled_affine(a, (5, 6, 7), (5, 6, 7)), a)


def test_learning_on_the_scan_skips_in_plane_axes_that_are_already_coarse(mni_t1_path):
    # restoring axis 0 of a 0.8 x 0.8 x 6.5 mm scan: axis 1 (0.8 mm) teaches, axis 2 (6.5 mm) does not
    assert sharp_axes((0.8, 0.8, 6.5), axis=0) == (0,)
    assert sharp_axes((0.8, 0.8, 6.5), axis=2) == (0, 1)
    assert sharp_axes((1.0, 1.2, 3.0), axis=2) == (0, 1)
    assert sharp_axes(None, axis=1) == (0, 1)
    import nibabel as nib

    data = np.asarray(nib.load(str(mni_t1_path)).dataobj, dtype=np.float32)[66:114, 84:132, 78:110]
    both = training_pairs(data, 4)
    first = training_pairs(data, 4, axes=(0,))
    second = training_pairs(data, 4, axes=(1,))
    # each axis alone gives its half of the pairs: the degraded row axis is the in-plane axis asked for
    for part, half in ((first, slice(0, 32)), (second, slice(32, 64))):
        np.testing.assert_array_equal(part[0], both[0][half])
        np.testing.assert_array_equal(part[1], both[1][half])
    np.testing.assert_array_equal(first[1][0], data[:, :, 0])
    np.testing.assert_array_equal(second[1][0], data[:, :, 0].T)


def test_self_supervised_sr_beats_cubic_on_a_real_crop(mni_t1_path):
    import nibabel as nib

    data = np.asarray(nib.load(str(mni_t1_path)).dataobj, dtype=np.float32)
    clean = data[66:114, 84:132, 78:110]  # 48 x 48 x 32 through the ventricles
    thick = thick_slices(clean, 2, 2)
    mask = foreground_mask(clean)
    cubic = superres_array(thick, 2, 2, method="cubic")[0]
    smore = superres_array(thick, 2, 2, method="smore", steps=30, seed=0)[0]
    assert psnr(smore, clean, mask) > psnr(cubic, clean, mask) + 0.1
    # float32 training (what a CPU without bf16 units gets) learns as well
    low, scale = float(thick.min()), float(thick.max() - thick.min())
    fp32 = fit_smore((thick - low) / scale, 2, steps=30, seed=0, bf16=False)
    up = resample((thick - low) / scale, clean.shape, 3)
    assert psnr(apply_smore(fp32, up, 2) * scale + low, clean, mask) > psnr(cubic, clean, mask) + 0.1


def test_superres_output_carries_provenance_and_keeps_units(mni_block):
    out = superres(mni_block, factor=2, axis=2, method="cubic")
    rec = out.meta["provenance"][-1]
    assert rec["operation"] == "superres" and rec["factor"] == 2 and rec["axis"] == 2
    assert out.dtype == torch.float32
    assert out.meta["modality"] == "MR"
    assert abs(float(out.mean()) - float(mni_block.mean())) < 0.02 * float(mni_block.max())


def test_bad_requests_name_the_key(mni_block):
    with pytest.raises(ConfigError, match="factor"):
        superres(mni_block, factor=1.5, axis=2)
    with pytest.raises(ConfigError, match="spacing"):
        superres(mni_block, spacing=(1.0, -1.0, 1.0))


def test_pretrained_networks_beat_cubic_on_real_mr_and_a_held_out_ct_phantom(mni_t1_path):
    import nibabel as nib

    from medgen.data.phantom import ct_phantom

    mr = np.asarray(nib.load(str(mni_t1_path)).dataobj, dtype=np.float32)[74:106, 92:124, 76:116]
    ct = ct_phantom(seed=77, shape=(40, 40, 24), spacing=(6.0, 6.0, 3.0), noise=0)["image"][0].numpy()
    for clean, factor in ((mr, 4), (ct, 2)):
        thick = thick_slices(clean, factor, 2)
        mask = foreground_mask(clean)
        cubic = psnr(superres_array(thick, factor, 2, method="cubic")[0], clean, mask)
        pretrained, info = superres_array(thick, factor, 2, method="pretrained")
        assert info["model"] == "superres2d" and info["steps"] == 0
        assert psnr(pretrained, clean, mask) > cubic + 1.0
        assert psnr(superres_array(thick, factor, 2, method="gan")[0], clean, mask) > cubic
    seen: dict[str, tuple[int, int]] = {}
    adapted, info = superres_array(thick, factor, 2, method="adapt", steps=5,
                                   progress=lambda stage, done, total: seen.update({stage: (done, total)}))
    assert info["steps"] == 5 and psnr(adapted, clean, mask) > cubic + 1.0
    assert info["training_precision"] == ("bf16" if bf16_native("cpu") else "fp32")
    # each stage reports to its end (the CLI draws a bar per stage): the steps, then every slice of both planes
    assert seen == {"training on the scan": (5, 5), "slices": (sum(clean.shape[:2]),) * 2}


def test_ct_is_recognised_by_its_metadata_or_by_hounsfield_values():
    from medgen.data import ct_phantom
    from medgen.intensity import is_ct

    hu = ct_phantom(seed=3, shape=(48, 48, 36), spacing=(8.0, 8.0, 8.0), noise=0)["image"][0].numpy()
    assert is_ct(hu) and is_ct(hu - hu.min(), modality="CT") and is_ct(hu - hu.min(), units="HU")
    assert not is_ct(hu, modality="MR")  # a modality that is said wins over the values
    assert not is_ct(hu - hu.min())  # shifted to non-negative and unlabelled: read as MR
    assert not is_ct(np.random.default_rng(0).normal(0, 1, (8, 8, 8)))  # signed but not HU


def test_auto_picks_the_pretrained_network_where_it_knows_the_factor(mni_block, monkeypatch):
    from medgen.enhance.pretrained import load_superres
    from medgen.enhance.superres import auto_method

    model = load_superres()
    assert model.config["architecture"] == "SliceSR2d"
    assert model.card["training"]["script"] == "scripts/train_superres.py"
    assert auto_method(4) == "pretrained" and auto_method(9) == "smore" and auto_method(1) == "cubic"
    assert auto_method(4, ct=True) == "adapt" and auto_method(9, ct=True) == "smore"
    with pytest.raises(ConfigError, match="factor"):
        superres(mni_block, factor=9, axis=2, method="pretrained")
    # auto falls back to SMORE for a factor the network does not know, with its short step budget
    monkeypatch.setattr("medgen.enhance.superres.AUTO_SMORE_STEPS", 2)
    rec = superres(mni_block, factor=9, axis=2).meta["provenance"][-1]
    assert (rec["method"], rec["steps"], rec["factor"]) == ("smore", 2, 9)
    out = superres(mni_block, factor=2, axis=2, method="gan")
    assert out.meta["provenance"][-1]["model"] == "superres2d-gan"


def test_nan_voxels_are_refused_in_one_line_not_spread(mni_block):
    x = mni_block[0].numpy().copy()
    x[2, 3, 1] = np.nan
    for method in ("cubic", "pretrained"):
        with pytest.raises(ScanValueError, match="1 voxels are NaN"):
            superres_array(x, 2, 2, method=method)
