"""Denoising real MNI152 crops: PSNR goes up, geometry and units stay the input's."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from medgen.enhance.denoise import denoise
from medgen.enhance.noise import add_gaussian
from medgen.enhance.pretrained import load_denoiser
from medgen.errors import ConfigError, ScanValueError
from medgen.evaluate.fidelity import foreground_mask, psnr
from medgen.io.meta import make_scan


def _gain(out, noisy, clean) -> float:
    mask = foreground_mask(clean)
    return psnr(out, clean, mask) - psnr(noisy, clean, mask)


def test_pretrained_denoiser_raises_psnr_and_keeps_geometry(mni_crop, noisy_crop):
    noisy, _ = noisy_crop
    out = denoise(noisy)
    assert _gain(out, noisy, mni_crop) > 3.0
    assert out.dtype == torch.float32 and out.shape == noisy.shape
    assert torch.equal(out.affine, noisy.affine)
    rec = out.meta["provenance"][-1]
    assert rec["operation"] == "denoise" and rec["method"] == "pretrained" and rec["model"] == "denoiser3d"
    assert rec["flips"] == 1 and rec["refine"] == 3  # the default: one network pass, three Wiener passes
    assert out.meta["synthetic"] is False


def test_collaborative_refinement_beats_the_network_alone_and_is_recorded(mni_crop, noisy_crop):
    noisy, _ = noisy_crop
    mask = foreground_mask(mni_crop)
    seen: dict[str, tuple[int, int]] = {}
    network, refined = denoise(noisy, refine=0), denoise(noisy, progress=lambda s, d, t: seen.update({s: (d, t)}))
    assert psnr(refined, mni_crop, mask) > psnr(network, mni_crop, mask) + 0.3
    # each stage reports its progress to the end (the CLI draws a bar per stage)
    assert list(seen) == ["network", "Wiener pass 1/3", "Wiener pass 2/3", "Wiener pass 3/3"]
    assert all(done == total > 0 for done, total in seen.values())
    assert network.meta["provenance"][-1]["refine"] == 0
    ensembled = denoise(noisy, flips=2, refine=0)  # mirrored passes still work, and are recorded
    assert psnr(ensembled, mni_crop, mask) > psnr(network, mni_crop, mask)
    assert ensembled.meta["provenance"][-1]["flips"] == 2
    with pytest.raises(ConfigError, match="'flips'"):
        denoise(noisy, flips=9)
    with pytest.raises(ConfigError, match="'refine'"):
        denoise(noisy, refine=-1)


def test_self_supervised_training_needs_no_weights_and_learns(mni_crop, noisy_crop):
    # Honest scope: a few dozen Neighbor2Neighbor steps from scratch lower the self-supervised loss but
    # do not yet beat the noisy input (see benchmarks/enhance.py); here: it trains and is recorded.
    noisy, sigma = noisy_crop
    from medgen.enhance.denoise import Normalisation
    from medgen.enhance.self_supervised import fit_neighbor2neighbor
    from medgen.models.enhancers import Denoiser3d

    norm = Normalisation.of(noisy[0].numpy())
    torch.manual_seed(0)
    losses = fit_neighbor2neighbor(Denoiser3d(), torch.from_numpy(norm.forward(noisy[0].numpy()))[None, None],
                                   sigma / norm.scale, steps=30, lr=2e-3, seed=0)
    assert np.mean(losses[-5:]) < np.mean(losses[:5])
    out = denoise(noisy, method="self-supervised", steps=2, seed=0)
    assert out.shape == noisy.shape and torch.equal(out.affine, noisy.affine)
    assert out.meta["provenance"][-1]["model"] is None


def test_adaptation_keeps_pretrained_quality(mni_crop, noisy_crop):
    noisy, _ = noisy_crop
    pretrained = denoise(noisy, method="pretrained", flips=2)
    adapted = denoise(noisy, method="adapt", steps=20, seed=0, flips=2)
    mask = foreground_mask(mni_crop)
    assert psnr(adapted, mni_crop, mask) > psnr(pretrained, mni_crop, mask) - 0.5
    assert _gain(adapted, noisy, mni_crop) > 3.0


def test_ct_output_stays_in_hounsfield_units(mni_crop):
    clean = mni_crop[0].numpy() / 255.0 * 100.0 - 20.0  # soft tissue, -20..80 HU
    clean[:, :, :6] = -1000.0  # air
    hu = make_scan(clean[None], mni_crop.affine.numpy(), modality="CT", units="HU")
    noisy = make_scan(add_gaussian(clean, 15.0, np.random.default_rng(0))[None], hu.affine.numpy(),
                      modality="CT", units="HU")
    out = denoise(noisy)
    assert out.meta["units"] == "HU" and out.meta["provenance"][-1]["noise"] == "gaussian"
    tissue = clean > -500
    assert abs(float(out[0].numpy()[tissue].mean()) - float(clean[tissue].mean())) < 3.0
    assert np.abs(out[0].numpy() - clean)[tissue].mean() < np.abs(noisy[0].numpy() - clean)[tissue].mean()


def test_denoise_is_deterministic_by_seed(noisy_crop):
    noisy, _ = noisy_crop
    a = denoise(noisy, method="self-supervised", steps=3, seed=5)
    b = denoise(noisy, method="self-supervised", steps=3, seed=5)
    assert torch.equal(a.as_tensor(), b.as_tensor())


def test_shipped_weights_load_with_their_card():
    model = load_denoiser()
    assert model.config["architecture"] == "Denoiser3d"
    assert model.card["training"]["script"] == "scripts/train_denoiser.py"
    assert sum(p.numel() for p in model.network.parameters()) < 6_000_000


def test_unknown_model_and_method_name_the_key(noisy_crop):
    noisy, _ = noisy_crop
    with pytest.raises(ConfigError, match="'model'"):
        denoise(noisy, model="no-such-model")
    with pytest.raises(ConfigError, match="'method'"):
        denoise(noisy, method="magic")


def test_network_runs_whole_axes_up_to_128_voxels_and_windows_longer_ones(mni_t1_path):
    import nibabel as nib

    from medgen.enhance.denoise import denoise_array
    from medgen.enhance.noise import add_rician

    clean = np.asarray(nib.load(str(mni_t1_path)).dataobj, dtype=np.float32)[70:110, 90:130, 20:160]
    noisy = add_rician(clean, 0.05 * float(clean.max()), np.random.default_rng(0))
    seen: dict[str, tuple[int, int]] = {}
    out, _ = denoise_array(noisy, refine=0, progress=lambda s, d, t: seen.update({s: (d, t)}))
    # 40 x 40 x 140 voxels: one window across the two short axes, two overlapping 80-voxel ones along z
    assert seen["network"] == (2, 2)
    mask = foreground_mask(clean)
    assert out.shape == clean.shape and psnr(out, clean, mask) > psnr(noisy, clean, mask) + 3.0


def test_windows_fit_the_scan():
    from monai.data.utils import dense_patch_slices

    from medgen.enhance.inference import fit_window

    assert fit_window(96, 128) == 96 and fit_window(128, 128) == 128  # one window, the whole axis
    for n in (129, 140, 197, 233, 256, 512):
        roi = fit_window(n, 128)
        assert roi <= 128
        windows = len(dense_patch_slices((n, 1, 1), (roi, 1, 1), (int(roi * 0.75), 1, 1)))
        fewest = next(k for k in range(2, 20) if 128 + (k - 1) * int(128 * 0.75) >= n)
        assert windows == fewest  # as few windows as 128-voxel ones would need
        shorter = len(dense_patch_slices((n, 1, 1), (roi - 1, 1, 1), (int((roi - 1) * 0.75), 1, 1)))
        assert shorter > windows  # and each no longer than that needs


def test_scans_smaller_than_the_network_window_are_padded_not_refused():
    """An 8-voxel axis (the U-Net pools four times) is padded by the sliding window; the output keeps
    the scan's shape and is closer to the clean 1 mm MNI152 block than the noisy input is."""
    from medgen.data import mni152

    clean = mni152(resolution=1)["image"][:, 90:98, 100:108, 90:98].clone()
    noise = 0.05 * float(clean.max()) * torch.randn(clean.shape, generator=torch.Generator().manual_seed(0))
    out = denoise(clean + noise, noise="gaussian", refine=0)
    assert out.shape == clean.shape
    assert float((out - clean).pow(2).mean()) < float(noise.pow(2).mean())


def test_per_scan_training_refuses_scans_too_small_for_its_crops(mni_block):
    with pytest.raises(ConfigError, match="every axis >= 32"):
        denoise(mni_block, method="self-supervised", steps=2)


@pytest.mark.parametrize("peak", [1e7, 1e9])
def test_huge_intensity_units_give_the_same_result_scaled(mni_crop, noisy_crop, peak):
    # the Wiener weights 1 / (sigma² sum w²) fell below float32's floor in such units: the output went to 0
    noisy, _ = noisy_crop
    scale = peak / float(noisy.max())
    out = denoise(noisy, refine=1)
    big = denoise(make_scan(noisy.numpy() * scale, noisy.affine.numpy(), modality="MR"), refine=1)
    assert torch.isfinite(big).all()
    assert _gain(big / scale, noisy, mni_crop) == pytest.approx(_gain(out, noisy, mni_crop), abs=0.05)


def test_background_offset_is_kept_in_the_output(mni_crop, noisy_crop):
    noisy, _ = noisy_crop
    out = denoise(noisy, refine=1)
    shifted = denoise(make_scan(noisy.numpy() + 500.0, noisy.affine.numpy(), modality="MR"), refine=1)
    assert float((shifted - 500.0 - out).abs().mean()) < 0.05 * float(out.mean())
    assert _gain(shifted - 500.0, noisy, mni_crop) > 3.0


def test_nan_voxels_are_refused_even_with_a_given_sigma(noisy_crop):
    noisy, sigma = noisy_crop
    holed = noisy.clone()
    holed[0, 3, 4, 5] = float("nan")
    with pytest.raises(ScanValueError, match="1 voxels are NaN or Inf"):
        denoise(holed, sigma=sigma)
