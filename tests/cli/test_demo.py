"""``medgen demo`` runs end to end on the built-in data (models with 2 steps to stay fast)."""

from __future__ import annotations

import torch
from typer.testing import CliRunner

from medgen.cli import app
from medgen.evaluate.fidelity import foreground_mask, psnr
from medgen.io import load_scan
from medgen.models.shapes import fit


def test_demo_writes_every_format_montages_and_model_samples(tmp_path):
    out = tmp_path / "demo"
    result = CliRunner().invoke(app, ["demo", "--out", str(out), "--steps", "2", "--sample-steps", "3"])
    assert result.exit_code == 0, result.output
    for name in ("mni152_t1.nii.gz", "mni152_t1.nrrd", "mni152_t1.mha", "mni152_formats.png", "cohort.png",
                 "ct_phantom.png", "generative_samples.png", "shipped_generators.png"):
        assert (out / name).is_file(), name
    series = load_scan(out / "mni152_t1_dicom")
    nifti = load_scan(out / "mni152_t1.nii.gz")
    assert series.shape == nifti.shape and (series.affine - nifti.affine).abs().max() < 1e-4
    # enhancement of a real crop: the written scans re-read, keep the clean crop's grid, and improve on it
    enhance = {p.name.split(".")[0]: load_scan(p) for p in (out / "enhance").glob("*.nii.gz")}
    clean = enhance["mni96_clean"]
    mask = foreground_mask(clean[0].numpy())
    score = {k: psnr(v[0].numpy(), clean[0].numpy(), mask) for k, v in enhance.items() if v.shape == clean.shape}
    assert score["mni96_denoised"] > score["mni96_noisy"] + 8.0
    assert score["mni96_superres"] > score["mni96_cubic"] + 1.0
    assert torch.allclose(enhance["mni96_superres"].affine, clean.affine, atol=1e-4)
    assert enhance["mni96_thick"].shape[-1] * 4 == clean.shape[-1]
    assert (out / "enhancement.png").is_file() and "PSNR" in result.output
    samples = sorted((out / "samples").rglob("*.nii.gz"))
    assert samples and all(load_scan(p).meta["synthetic"] for p in samples)
    shipped = sorted((out / "samples" / "brain-rflow").glob("*.nii.gz"))  # whole 3 mm heads, no training
    assert len(shipped) == 2 and load_scan(shipped[0]).shape[1:] == (64, 80, 64)
    if (out / "samples" / "brain-labels").is_dir():  # rendered from two real subjects' label maps
        rendered = sorted((out / "samples" / "brain-labels").glob("sample*.nii.gz"))
        condition = load_scan(out / "samples" / "brain-labels" / "condition_0.nii.gz")
        assert len(rendered) == 2 and load_scan(rendered[0]).meta["synthetic"]
        image, lab = load_scan(rendered[0])[0], fit(condition.float(), (64, 80, 64))[0].round()
        assert image[lab == 3].mean() > image[lab == 2].mean() > image[lab == 1].mean()  # T1: WM > GM > CSF
    again = CliRunner().invoke(app, ["demo", "--out", str(out), "--no-models"])
    assert again.exit_code == 1 and "already exists" in again.output
