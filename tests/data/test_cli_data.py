"""``medgen data export`` / ``medgen data check`` through the real CLI app."""

from __future__ import annotations

from typer.testing import CliRunner

from medgen.cli import app

runner = CliRunner()


def test_export_writes_the_folder_layout(tmp_path):
    out = tmp_path / "brains"
    result = runner.invoke(app, ["data", "export", "--out", str(out), "--subjects", "2", "--resolution", "3",
                                 "--seed", "4"])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (out / "images").glob("*.nii.gz")) == ["sub-000.nii.gz", "sub-001.nii.gz"]
    assert (out / "labels" / "sub-001.nii.gz").is_file() and (out / "dataset.json").is_file()
    result = runner.invoke(app, ["data", "check", str(out)])
    assert result.exit_code == 0 and "sub-001" in result.output


def test_export_ct_writes_boxes(tmp_path):
    out = tmp_path / "ct"
    result = runner.invoke(app, ["data", "export", "--out", str(out), "--kind", "ct", "--subjects", "1"])
    assert result.exit_code == 0, result.output
    assert (out / "boxes" / "sub-000.json").is_file() and (out / "lesion_masks" / "sub-000.nii.gz").is_file()


def test_bad_input_gives_one_line_error_and_exit_1(tmp_path):
    result = runner.invoke(app, ["data", "check", str(tmp_path / "nowhere")])
    assert result.exit_code == 1 and "no such folder" in result.output
    assert "Traceback" not in result.output
    result = runner.invoke(app, ["data", "export", "--out", str(tmp_path / "x"), "--kind", "mri"])
    assert result.exit_code == 1 and "unknown data kind" in result.output
