"""The notebooks stay reviewable and CI-sized: outputs stripped, a quick-mode switch, public API only.

nbmake runs each notebook top to bottom (see ``[tool.pytest.ini_options]``); these checks cover what
running them cannot: what is committed.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

NOTEBOOKS = sorted(Path(__file__).parent.glob("[0-9][0-9]_*.ipynb"))
PRIVATE_IMPORT = re.compile(r"^\s*(from|import)\s+medgen(\.\w+)*\._\w*", re.MULTILINE)


def code_cells(path: Path) -> list[dict]:
    return [c for c in json.loads(path.read_text())["cells"] if c["cell_type"] == "code"]


def test_the_four_notebooks_exist():
    assert [p.name[:2] for p in NOTEBOOKS] == ["01", "02", "03", "04"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_outputs_are_stripped(path):
    for cell in code_cells(path):
        assert cell["outputs"] == [] and cell["execution_count"] is None, f"{path.name}: run nbstripout or clear"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_reads_the_quick_mode_switch_before_any_work(path):
    first = "".join(code_cells(path)[0]["source"])
    assert 'QUICK = os.environ.get("MEDGEN_QUICK", "0") == "1"' in first


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_uses_only_public_medgen_modules(path):
    source = "\n".join("".join(c["source"]) for c in code_cells(path))
    assert not PRIVATE_IMPORT.search(source), f"{path.name} imports a private medgen module"
    assert "medgen" in source


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_runs_on_the_standard_python3_kernel(path):
    assert json.loads(path.read_text())["metadata"]["kernelspec"]["name"] == "python3"
