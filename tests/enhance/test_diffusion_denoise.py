"""Diffusion posterior-sampling denoiser: a tiny rectified-flow model trained here on the brain cohort."""

from __future__ import annotations

import numpy as np
import pytest
from typer.testing import CliRunner

from medgen.cli import app
from medgen.data.cohort import brain_cohort
from medgen.enhance.diffusion_denoise import diffusion_denoise, diffusion_denoise_array
from medgen.errors import ConfigError
from medgen.io import load_scan, save_scan
from medgen.io.meta import make_scan
from medgen.models import load_model
from medgen.training import parse_config, train

runner = CliRunner()


@pytest.fixture(scope="module")
def rflow_dir(tmp_path_factory):
    """A 16³ rectified-flow model (6 mm brain cohort crops), 20 steps: enough to run, not to be good."""
    cfg = {
        "name": "tiny-rflow",
        "model": {"family": "diffusion", "size": [16, 16, 16],
                  "diffusion": {"channels": [8, 16], "attention": [False, False], "norm_num_groups": 4,
                                "objective": "rflow"}},
        "data": {"source": "brain", "n_subjects": 3, "val_subjects": 1, "downsample": 2},
        "train": {"steps": 20, "batch_size": 2, "val_every": 0, "checkpoint_every": 0, "lr": 1e-3},
    }
    out = tmp_path_factory.mktemp("rflow")
    train(parse_config(cfg), out, device="cpu", progress=False)
    return out / "model"


@pytest.fixture(scope="module")
def subject_crop() -> np.ndarray:
    """A real 16³ block of a simulated T1 subject at 6 mm (the model's grid)."""
    img = brain_cohort(1, resolution=3, seed=7)[0]["image"][0].numpy()[::2, ::2, ::2]
    c = np.array(img.shape) // 2
    return np.ascontiguousarray(img[c[0] - 8 : c[0] + 8, c[1] - 8 : c[1] + 8, c[2] - 8 : c[2] + 8])


def test_posterior_spread_grows_with_the_noise_and_is_reproducible(rflow_dir, subject_crop):
    model = load_model(rflow_dir)
    rng = np.random.default_rng(0)
    spreads = []
    for level in (0.03, 0.2):
        sigma = level * float(subject_crop.max())
        noisy = subject_crop + rng.normal(0, sigma, subject_crop.shape).astype(np.float32)
        mean, std, info = diffusion_denoise_array(noisy, model, sigma=sigma, samples=3, steps=10, seed=1)
        assert mean.shape == std.shape == subject_crop.shape
        assert np.isfinite(mean).all() and (std >= 0).all() and std.mean() > 0
        spreads.append(float(std.mean()))
        again = diffusion_denoise_array(noisy, model, sigma=sigma, samples=3, steps=10, seed=1)[0]
        np.testing.assert_array_equal(again, mean)
    assert spreads[1] > 2 * spreads[0]


def test_api_and_cli_write_denoised_scan_and_uncertainty_with_provenance(rflow_dir, subject_crop, tmp_path):
    noisy = subject_crop + np.random.default_rng(1).normal(0, 0.1, subject_crop.shape).astype(np.float32)
    scan = make_scan(noisy[None], np.diag([6.0, 6.0, 6.0, 1.0]), modality="MR")
    mean, unc = diffusion_denoise(scan, str(rflow_dir), samples=2, steps=10)
    assert mean.shape == unc.shape == scan.shape
    assert mean.meta["provenance"][-1]["method"] == "diffusion"
    assert unc.meta["provenance"][-1]["operation"] == "denoise-uncertainty"
    src = save_scan(scan, tmp_path / "noisy.nii.gz")
    args = ["denoise", str(src), str(tmp_path / "out.nii.gz"), "--method", "diffusion", "--model", str(rflow_dir),
            "--samples", "2", "--uncertainty", str(tmp_path / "unc.nii.gz")]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    out, u = load_scan(tmp_path / "out.nii.gz"), load_scan(tmp_path / "unc.nii.gz")
    np.testing.assert_allclose(out.affine.numpy(), scan.affine.numpy(), atol=1e-5)
    assert float(u.min()) >= 0 and float(u.max()) > 0


def test_uncertainty_needs_the_diffusion_method_and_a_diffusion_model(rflow_dir, subject_crop, tmp_path):
    src = save_scan(make_scan(subject_crop[None], np.eye(4), modality="MR"), tmp_path / "s.nii.gz")
    unc = str(tmp_path / "u.nii.gz")
    bad = runner.invoke(app, ["denoise", str(src), str(tmp_path / "o.nii.gz"), "--uncertainty", unc])
    assert bad.exit_code != 0 and "uncertainty" in bad.output
    with pytest.raises(ConfigError, match="diffusion model folder"):
        diffusion_denoise(load_scan(src), "denoiser3d")
    wrong = make_scan(np.zeros((1, 20, 16, 16), np.float32), np.eye(4))
    model = load_model(rflow_dir)
    model.config.diffusion.mean_image = True  # a mean-image model is tied to its own grid
    with pytest.raises(ConfigError, match="mean image"):
        diffusion_denoise(wrong, model)
