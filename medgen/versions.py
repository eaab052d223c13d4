"""Versions of medgen and of the libraries a bug report needs, checked against medgen's floors.

The floors are the ``Requires-Dist`` lines of the installed medgen (``pyproject.toml``); several sit
above known vulnerabilities (see the comments there). ``medgen --version`` and ``medgen info`` print
:func:`versions`; :func:`below_floors` names any installed dependency older than its floor.

Example:
    >>> from medgen.versions import versions
    >>> sorted(versions())[:3]   # doctest: +SKIP
    ['SimpleITK', 'medgen', 'monai']
"""

from __future__ import annotations

import platform
from importlib import metadata

from packaging.requirements import Requirement
from packaging.version import Version

REPORTED = ("torch", "monai", "pydicom", "nibabel", "SimpleITK", "numpy")
"""Distributions whose versions go into every bug report, besides medgen and Python."""


def _installed(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def versions() -> dict[str, str]:
    """``{"medgen": "0.1.0", "python": "3.11.7", "torch": "2.13.0+cpu", ...}``; missing ones read
    ``"not installed"``."""
    import medgen

    out = {"medgen": medgen.__version__, "python": platform.python_version()}
    out.update({name: _installed(name) or "not installed" for name in REPORTED})
    return out


def floors() -> dict[str, Requirement]:
    """medgen's required (not optional) dependencies by distribution name, as declared when installed."""
    reqs = [Requirement(r) for r in metadata.requires("medgen") or []]
    return {r.name: r for r in reqs if r.marker is None}


def below_floors() -> list[str]:
    """One line per required dependency whose installed version is missing or outside its range."""
    problems = []
    for name, req in floors().items():
        found = _installed(name)
        if found is None:
            problems.append(f"{name}: not installed (medgen needs {req.specifier})")
        elif not req.specifier.contains(Version(found).base_version, prereleases=True):
            problems.append(f"{name} {found}: outside medgen's range {req.specifier}")
    return problems
