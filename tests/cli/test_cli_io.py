"""``medgen --help/--version/info/convert`` on real files, and clean errors on bad ones."""

from __future__ import annotations

import subprocess
import sys

import nibabel as nib
import numpy as np
from typer.testing import CliRunner

import medgen
from medgen.cli import app
from medgen.io import load_scan, save_scan

runner = CliRunner()


def test_help_and_version():
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0 and "convert" in result.output and "info" in result.output
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and medgen.__version__ in result.output


def test_info_reports_geometry_of_real_scan(mni_t1_path):
    result = runner.invoke(app, ["info", str(mni_t1_path), "--json"])
    assert result.exit_code == 0, result.output
    assert '"shape"' in result.output and "197" in result.output and '"RAS"' in result.output


def test_convert_nifti_to_nrrd_keeps_geometry_and_marks_provenance(tmp_path, mni_block):
    src = save_scan(mni_block, tmp_path / "in.nii.gz")
    result = runner.invoke(app, ["convert", str(src), str(tmp_path / "out.nrrd")])
    assert result.exit_code == 0, result.output
    out = load_scan(tmp_path / "out.nrrd")
    assert np.allclose(out.affine.numpy(), mni_block.affine.numpy(), atol=1e-4)
    assert out.meta["provenance"][-1]["operation"] == "convert"


def test_convert_refuses_existing_output_and_keeps_it(tmp_path, mni_block):
    src = save_scan(mni_block, tmp_path / "in.nii.gz")
    dst = save_scan(mni_block * 3, tmp_path / "out.nii.gz")
    before = dst.read_bytes()
    result = runner.invoke(app, ["convert", str(src), str(dst)])
    assert result.exit_code == 1
    assert "already exists" in result.output and "Traceback" not in result.output
    assert dst.read_bytes() == before
    assert runner.invoke(app, ["convert", str(src), str(dst), "--overwrite"]).exit_code == 0


def test_bad_input_gives_one_line_error_and_nonzero_exit_without_traceback(tmp_path):
    bad = tmp_path / "broken.nii.gz"
    nib.save(nib.Nifti1Image(np.random.default_rng(0).random((8, 8, 8), np.float32), np.eye(4)), str(bad))
    bad.write_bytes(bad.read_bytes()[:-200])
    proc = subprocess.run(
        [sys.executable, "-m", "medgen", "info", str(bad)], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 1
    lines = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and str(bad) in lines[0] and "Traceback" not in proc.stderr
