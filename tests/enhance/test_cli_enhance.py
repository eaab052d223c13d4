"""``medgen denoise`` / ``medgen superres`` on files and folders."""

from __future__ import annotations

import json

import numpy as np
from typer.testing import CliRunner

from medgen.cli import app
from medgen.io import load_scan, save_scan

runner = CliRunner()


def test_denoise_cli_on_a_nifti_file_keeps_geometry_and_records_provenance(tmp_path, noisy_crop):
    noisy, _ = noisy_crop
    src = save_scan(noisy, tmp_path / "noisy.nii.gz")
    result = runner.invoke(app, ["denoise", str(src), str(tmp_path / "out.nii.gz")])
    assert result.exit_code == 0, result.output
    assert "method=pretrained" in result.output
    out = load_scan(tmp_path / "out.nii.gz")
    np.testing.assert_allclose(out.affine.numpy(), load_scan(src).affine.numpy(), atol=1e-6)
    record = json.loads((tmp_path / "out.json").read_text())["provenance"][-1]
    assert record["operation"] == "denoise" and record["model"] == "denoiser3d" and record["seed"] == 0


def test_denoise_cli_flips_option_is_recorded_and_checked(tmp_path, noisy_crop):
    noisy, _ = noisy_crop
    src = save_scan(noisy, tmp_path / "noisy.nii.gz")
    result = runner.invoke(app, ["denoise", str(src), str(tmp_path / "one.nii.gz"), "--flips", "1"])
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "one.json").read_text())["provenance"][-1]["flips"] == 1
    bad = runner.invoke(app, ["denoise", str(src), str(tmp_path / "bad.nii.gz"), "--flips", "0"])
    assert bad.exit_code == 1 and "'flips'" in bad.output and "Traceback" not in bad.output
    assert not (tmp_path / "bad.nii.gz").exists()


def test_denoise_cli_refuses_an_existing_output_without_overwrite(tmp_path, noisy_crop):
    noisy, _ = noisy_crop
    src = save_scan(noisy, tmp_path / "noisy.nii.gz")
    dst = tmp_path / "out.nii.gz"
    dst.write_bytes(b"keep me")
    result = runner.invoke(app, ["denoise", str(src), str(dst)])
    assert result.exit_code == 1 and "already exists" in result.output
    assert dst.read_bytes() == b"keep me"
    assert runner.invoke(app, ["denoise", str(src), str(dst), "--overwrite"]).exit_code == 0


def test_denoise_cli_folder_reports_an_unreadable_file_and_does_the_rest(tmp_path, noisy_crop):
    noisy, _ = noisy_crop
    folder = tmp_path / "in"
    save_scan(noisy, folder / "a.nii.gz")
    save_scan(noisy, folder / "b.nrrd")
    (folder / "broken.nii.gz").write_bytes(b"not a scan at all")
    result = runner.invoke(app, ["denoise", str(folder), str(tmp_path / "out")])
    assert "broken.nii.gz" in result.output and "2 of 3" in result.output
    assert result.exit_code == 1  # partial failure is reported in the exit code, after the others ran
    assert (tmp_path / "out" / "a.nii.gz").is_file() and (tmp_path / "out" / "b.nrrd").is_file()
    assert not (tmp_path / "out" / "broken.nii.gz").exists()


def test_superres_cli_writes_the_finer_grid(tmp_path, mni_block):
    src = save_scan(mni_block, tmp_path / "thick.mha")
    result = runner.invoke(app, ["superres", str(src), str(tmp_path / "thin.nii.gz"), "--factor", "2",
                                 "--axis", "z", "--method", "cubic"])
    assert result.exit_code == 0, result.output
    out = load_scan(tmp_path / "thin.nii.gz")
    assert out.shape[1:] == (mni_block.shape[1], mni_block.shape[2], 2 * mni_block.shape[3])
    np.testing.assert_allclose(out.meta["spacing"][2], mni_block.meta["spacing"][2] / 2, atol=1e-5)


def test_superres_cli_needs_exactly_one_of_factor_and_spacing(tmp_path, mni_block):
    src = save_scan(mni_block, tmp_path / "thick.nii.gz")
    result = runner.invoke(app, ["superres", str(src), str(tmp_path / "o.nii.gz")])
    assert result.exit_code == 1 and "factor" in result.output
