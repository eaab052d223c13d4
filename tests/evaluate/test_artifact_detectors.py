"""Reference-free artefact detectors on real volumes: the MNI152 T1 (3 mm, with a little Rician noise
so it looks acquired) and the CT phantom in HU."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
from scipy import ndimage
from typer.testing import CliRunner

from medgen.evaluate.artifacts import ARTIFACTS, artifact_scores, check_artifacts

SPACING = (3.0, 3.0, 3.0)


@pytest.fixture(scope="module")
def mr() -> np.ndarray:
    """MNI152 T1 at 3 mm (66, 78, 63), padded with background, Rician noise at 1 % of the maximum."""
    from medgen.data import mni152

    x = np.pad(mni152(3)["image"].as_tensor()[0].numpy(), 8)
    rng = np.random.default_rng(0)
    s = 0.01 * x.max()
    return np.hypot(x + rng.normal(0, s, x.shape), rng.normal(0, s, x.shape)).astype(np.float32)


@pytest.fixture(scope="module")
def ct() -> tuple[np.ndarray, tuple[float, float, float]]:
    from medgen.data import ct_phantom

    scan = ct_phantom(1, shape=(64, 64, 24), spacing=(6.0, 6.0, 12.0))["image"]
    return scan.as_tensor()[0].numpy(), (6.0, 6.0, 12.0)


def _ghost(x: np.ndarray, axis: int, every: int = 2, keep: float = 0.3) -> np.ndarray:
    """N/every ghosts: every ``every``-th k-space line along ``axis`` scaled by ``keep``, magnitude image."""
    k = np.fft.fftn(x)
    idx = [slice(None)] * 3
    idx[axis] = slice(1, None, every)  # the centre line (0) stays, as TorchIO restores it
    k[tuple(idx)] *= keep
    return np.abs(np.fft.ifftn(k)).astype(np.float32)


def test_clean_mr_and_ct_pass(mr, ct):
    assert check_artifacts(mr, SPACING, "MR").flags == []
    assert check_artifacts(ct[0], ct[1], "CT").flags == []


def test_blur_is_flagged_and_only_blur_rises(mr):
    blurred = ndimage.gaussian_filter(mr, 1.5)
    scores = artifact_scores(blurred, SPACING, "MR")
    assert scores["blur"] > 1 > artifact_scores(mr, SPACING, "MR")["blur"]


def test_ghosting_is_flagged_with_a_reason(mr):
    report = check_artifacts(_ghost(mr, axis=1), SPACING, "MR")
    assert "ghosting" in report.flags
    assert any(r.startswith("ghosting:") for r in report.reasons)


def test_ghosting_ignores_structure_that_repeats_at_every_shift(mr):
    # one slice copied along an in-plane axis correlates with itself at N/2 as much as anywhere else:
    # no ghost (an |r| at N/k alone reads ~1 here)
    tiled = np.repeat(mr[:, 40:41, :], mr.shape[1], axis=1)
    assert artifact_scores(tiled, SPACING, "MR")["ghosting"] < 1


def test_ghosting_is_measured_without_a_dark_background(mr):
    crop = np.ascontiguousarray(mr[25:55, 30:70, 20:50])  # inside the head: no background at all
    assert artifact_scores(crop, SPACING, "MR")["ghosting"] < 1
    assert "ghosting" in check_artifacts(_ghost(crop, axis=1), SPACING, "MR").flags


def test_motion_ignores_anatomy_finer_along_one_axis(mr):
    # the head stretched 2x (linear) along one axis: its fine detail differs between the in-plane
    # axes (an anisotropy-of-fine-detail measure flags it), but its k-space decays smoothly along both
    stretched = ndimage.zoom(mr, (1, 2, 1), order=1)[:, 40:40 + mr.shape[1], :]
    assert artifact_scores(stretched, SPACING, "MR")["motion"] < 1


def test_motion_needs_two_inplane_axes(mr):
    assert artifact_scores(mr, (3.0, 6.0, 12.0), "MR")["motion"] == 0


def test_motion_is_flagged():
    import torch

    from medgen.augment import RandTorchIOArtifact
    from medgen.data import mni152

    x = np.pad(mni152(3)["image"].as_tensor()[0].numpy(), 8)
    t = RandTorchIOArtifact("RandomMotion", degrees=4.0, translation=4.0, num_transforms=2)
    t.set_random_state(seed=0)
    moved = np.abs(torch.as_tensor(t(torch.from_numpy(x)[None]))[0].numpy())
    assert "motion" in check_artifacts(moved, SPACING, "MR").flags


@pytest.mark.parametrize("change", ["no intercept", "slope x0.5", "unit range"])
def test_wrong_ct_scaling_is_flagged(ct, change):
    x, spacing = ct
    bad = {"no intercept": x + 1024, "slope x0.5": x * 0.5, "unit range": (x - x.min()) / np.ptp(x)}[change]
    assert "intensity" in check_artifacts(bad, spacing, "CT").flags


@pytest.mark.parametrize("change", ["clipped", "offset", "negative", "6-bit"])
def test_wrong_mr_scaling_is_flagged(mr, change):
    hi = np.percentile(mr, 99.5)
    bad = {"clipped": np.minimum(mr, np.percentile(mr, 98)), "offset": mr + 0.1 * hi, "negative": mr - 0.1 * hi,
           "6-bit": np.round(mr / mr.max() * 63)}[change]
    assert check_artifacts(bad, SPACING, "MR").flags == ["intensity"]


def test_mr_scores_ignore_gain_and_axis_order(mr):
    base = artifact_scores(mr, SPACING, "MR")
    assert artifact_scores(mr * 10, SPACING, "MR") == pytest.approx(base, rel=1e-3, abs=1e-3)
    permuted = artifact_scores(np.ascontiguousarray(mr.transpose(2, 0, 1)), SPACING, "MR")
    for name in ARTIFACTS:
        assert abs(permuted[name] - base[name]) < 0.25, name


def test_inplane_axes_follow_spacing_after_permutation(mr):
    thick = np.ascontiguousarray(mr[:, :, ::2])
    blurred = ndimage.gaussian_filter(thick, (1.5, 1.5, 0))
    scores = artifact_scores(blurred.transpose(2, 0, 1), (6.0, 3.0, 3.0), "MR")
    assert scores["blur"] > 1


def test_cli_artifacts_json_and_exit_codes(mr, tmp_path):
    from medgen.cli import app

    clean, ghosted = tmp_path / "clean.nii.gz", tmp_path / "ghost.nii.gz"
    nib.save(nib.Nifti1Image(mr, np.diag([3.0, 3.0, 3.0, 1.0])), clean)
    nib.save(nib.Nifti1Image(_ghost(mr, axis=0), np.diag([3.0, 3.0, 3.0, 1.0])), ghosted)
    runner = CliRunner()
    ok = runner.invoke(app, ["qc", "artifacts", str(clean), "--json"])
    assert ok.exit_code == 0, ok.output
    assert '"flags": []' in ok.output
    flagged = runner.invoke(app, ["qc", "artifacts", str(clean), str(ghosted)])
    assert flagged.exit_code == 2 and "ghosting" in flagged.output


def test_cli_bad_file_is_one_line(tmp_path):
    from medgen.cli import app

    bad = tmp_path / "broken.nii.gz"
    bad.write_bytes(b"not a scan")
    result = CliRunner().invoke(app, ["qc", "artifacts", str(bad)])
    assert result.exit_code == 1
    assert "Traceback" not in result.output and str(bad) in result.output
    assert len([line for line in result.output.splitlines() if line.strip()]) == 1
