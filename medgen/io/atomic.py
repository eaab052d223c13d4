"""Atomic, non-destructive output writing.

Every file or folder medgen writes goes to a temporary name inside the target folder, is flushed,
and is renamed into place with :func:`os.replace`. On failure the temporary is removed, so a
half-written output never exists under the final name.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path

from medgen.errors import ScanWriteError

# Multi-part suffixes that readers dispatch on; the temporary keeps them so nibabel/SimpleITK pick
# the right writer.
_COMPOUND_SUFFIXES = (".nii.gz", ".tar.gz")


def full_suffix(path: str | Path) -> str:
    """The format suffix of ``path``, lower-cased (``.nii.gz`` counts as one suffix)."""
    name = Path(path).name.lower()
    for suffix in _COMPOUND_SUFFIXES:
        if name.endswith(suffix):
            return suffix
    return Path(name).suffix


def check_output_path(
    path: str | Path, *, overwrite: bool = False, inputs: Iterable[str | Path] = ()
) -> Path:
    """Refuse an output that would destroy data.

    Raises:
        ScanWriteError: if ``path`` equals one of ``inputs``, or exists and ``overwrite`` is False.
    """
    out = Path(path)
    resolved = out.resolve()
    for src in inputs:
        if src is not None and Path(src).resolve() == resolved:
            raise ScanWriteError(out, "output path is the same as an input; choose another path")
    if out.exists() and not overwrite:
        raise ScanWriteError(out, "output already exists; pass --overwrite (overwrite=True) to replace it")
    return out


@contextlib.contextmanager
def atomic_path(
    path: str | Path, *, overwrite: bool = False, inputs: Iterable[str | Path] = (), is_dir: bool = False
) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success move it onto ``path`` atomically.

    The temporary keeps the suffix of ``path`` so format-sniffing writers behave. For ``is_dir`` the
    temporary is a fresh folder, and an existing output folder is replaced only with ``overwrite``.

    Example:
        >>> with atomic_path("out.nii.gz") as tmp:  # doctest: +SKIP
        ...     nib.save(img, tmp)
    """
    out = check_output_path(path, overwrite=overwrite, inputs=inputs)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name.removesuffix(full_suffix(out))}.medgen-tmp-{uuid.uuid4().hex[:8]}{full_suffix(out)}"
    if is_dir:
        tmp.mkdir()
    try:
        yield tmp
        if is_dir:
            if out.exists():
                backup = out.parent / f".{out.name}.medgen-old-{uuid.uuid4().hex[:8]}"
                os.replace(out, backup)
                os.replace(tmp, out)
                shutil.rmtree(backup, ignore_errors=True)
            else:
                os.replace(tmp, out)
        else:
            with open(tmp, "rb+") as fh:
                os.fsync(fh.fileno())
            os.replace(tmp, out)
    except BaseException:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        elif tmp.exists():
            tmp.unlink()
        raise


def safe_join(root: str | Path, name: str) -> Path:
    """Join ``name`` under ``root``, refusing names that would escape it (``..``, absolute paths)."""
    base = Path(root).resolve()
    target = (base / name).resolve()
    if base != target and base not in target.parents:
        raise ScanWriteError(name, f"path escapes the output folder {root}")
    return target
