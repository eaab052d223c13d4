"""Imports follow the data flow: a module imports only from packages to its left.

``io → viz → data → models → training → enhance | synthesize → augment → evaluate → demo → cli``
(and ``python -m medgen`` on top).
``viz`` (montages, written through ``io``'s atomic writer) sits just above ``io`` because
``training`` draws its validation montages with it. ``enhance`` and ``synthesize`` share a level and
do not import each other. ``errors``, ``seeding``, ``versions`` and ``intensity`` are shared utilities
that any layer may import and that import no layer themselves. Every import counts, including the
lazy ones inside functions.
"""

from __future__ import annotations

import ast
from pathlib import Path

import medgen

LAYERS = [{"io"}, {"viz"}, {"data"}, {"models"}, {"training"}, {"enhance", "synthesize"}, {"augment"},
          {"evaluate"}, {"demo"}, {"cli"}, {"__main__"}]
SHARED = {"errors", "seeding", "versions", "intensity"}
RANK = {name: rank for rank, names in enumerate(LAYERS) for name in names}


def imported_units(path: Path, root: Path) -> list[tuple[int, str]]:
    """``(line, unit)`` of every ``medgen`` package or top-level module that ``path`` imports."""
    package = path.relative_to(root.parent).with_suffix("").parts[:-1]  # ("medgen", "enhance")
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join([*package[: len(package) - node.level + 1], *([base] if base else [])])
            # ``from medgen import viz`` names a module; ``from medgen.io import load_scan`` a package's member
            names = [f"{base}.{alias.name}" for alias in node.names] if base == "medgen" else [base]
        else:
            continue
        for name in names:
            parts = name.split(".")
            is_module = len(parts) > 1 and ((root / parts[1]).is_dir() or (root / f"{parts[1]}.py").is_file())
            if parts[0] == "medgen" and is_module:  # not ``import medgen`` or ``from medgen import __version__``
                found.append((node.lineno, parts[1]))
    return found


def layer_violations(root: Path) -> list[str]:
    """Every import in the package at ``root`` that goes from a lower layer to a higher or sibling one."""
    problems = []
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root)
        if rel == Path("__init__.py"):  # the package face: a lazy ``medgen.load_model``, no layer of its own
            continue
        unit = rel.parts[0] if len(rel.parts) > 1 else rel.stem
        for line, target in imported_units(path, root):
            if target == unit or target in SHARED:
                if unit in SHARED and target != unit:
                    problems.append(f"{rel}:{line}: shared utility {unit} imports shared utility {target}")
                continue
            if unit in SHARED:
                problems.append(f"{rel}:{line}: shared utility {unit} imports the {target} layer")
            elif unit not in RANK or target not in RANK:
                problems.append(f"{rel}:{line}: {unit} → {target}: not in the layer list of tests/test_layers.py")
            elif RANK[target] >= RANK[unit]:
                problems.append(f"{rel}:{line}: {unit} imports {target} (same level or above it)")
    return problems


def test_no_module_imports_from_a_higher_or_sibling_layer():
    assert layer_violations(Path(medgen.__file__).parent) == []


def test_the_check_catches_an_upward_import(tmp_path):
    root = tmp_path / "medgen"
    for name, text in {"enhance/demo.py": "from medgen.evaluate.fidelity import psnr\n",
                       "enhance/ok.py": "from medgen.io import load_scan\nfrom medgen import errors\n",
                       "synthesize/x.py": "def f():\n    from ..enhance import denoise\n",
                       "viz.py": "from medgen.io.atomic import atomic_path\n",
                       "io/atomic.py": "", "errors.py": "", "evaluate/fidelity.py": ""}.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    assert layer_violations(root) == [
        "enhance/demo.py:1: enhance imports evaluate (same level or above it)",
        "synthesize/x.py:2: synthesize imports enhance (same level or above it)",
    ]
