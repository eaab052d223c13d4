"""Installed dependencies sit at or above medgen's floors, and the versions reach bug reports."""

from __future__ import annotations

import json
from importlib import metadata

from packaging.version import Version
from typer.testing import CliRunner

from medgen.cli import app
from medgen.data import mni152
from medgen.io import save_scan
from medgen.versions import REPORTED, below_floors, floors, versions

# Fixed advisories (pyproject.toml says which): a floor may rise, never fall below these.
SECURITY_FLOORS = {"torch": "2.10", "pydicom": "3.0.2", "monai": "1.6"}


def test_installed_dependencies_meet_every_floor():
    """A CI environment that drifts below a floor (or loses a dependency) fails here, by name."""
    assert below_floors() == []


def test_declared_floors_stay_above_fixed_vulnerabilities():
    declared = floors()
    for name, fixed in SECURITY_FLOORS.items():
        lowest = [Version(s.version) for s in declared[name].specifier if s.operator in (">=", "==", "~=")]
        assert lowest and min(lowest) >= Version(fixed), f"{name} floor {declared[name].specifier} is below {fixed}"


def test_below_floors_names_a_dependency_outside_its_range(monkeypatch):
    real = metadata.version
    monkeypatch.setattr(metadata, "version", lambda name: "2.4.0" if name == "torch" else real(name))
    problems = below_floors()
    assert len(problems) == 1 and problems[0].startswith("torch 2.4.0") and ">=2.10" in problems[0]


def test_version_and_info_print_the_library_versions(tmp_path):
    runner = CliRunner()
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0
    for name in REPORTED:
        assert f"{name} {metadata.version(name)}" in result.output
    path = save_scan(mni152(resolution=3)["image"], tmp_path / "t1.nii.gz")
    result = runner.invoke(app, ["info", str(path), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["software"] == versions()
    table = runner.invoke(app, ["info", str(path)])
    assert table.exit_code == 0 and f"pydicom {metadata.version('pydicom')}" in table.output
