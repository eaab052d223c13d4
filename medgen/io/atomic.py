"""Atomic, non-destructive output writing.

Every file or folder medgen writes goes to a temporary name inside the target folder, is flushed,
and is renamed into place with :func:`os.replace`. On failure the temporary is removed, so a
half-written output never exists under the final name.

A temporary is named ``.NAME.medgen-tmp-PID-RANDOM.SUFFIX`` after its target and the writing
process. A process killed mid-write (SIGKILL, power loss) cannot remove it, so the next write to the
same target removes those of its temporaries that are older than :data:`STALE_SECONDS` and whose
process is gone.

:func:`check_output` runs the same checks up front (plus a probe file), so a command fails on an
unwritable output before doing its work; an ``OSError`` while writing becomes a one-line
:class:`ScanWriteError` too.
"""

from __future__ import annotations

import contextlib
import errno
import glob
import os
import re
import shutil
import tempfile
import time
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path

from medgen.errors import ScanWriteError

STALE_SECONDS = 15 * 60  # the writer's pid is checked too; the age guards against a pid seen from another host

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
    try:
        tmp = temporary_path(out, is_dir=is_dir)
    except OSError as err:
        raise ScanWriteError(out, os_problem(err)) from None
    try:
        yield tmp
        if is_dir:
            if out.exists():
                backup = out.parent / f".{out.name}.medgen-old-{uuid.uuid4().hex[:8]}"
                os.replace(out, backup)
                try:
                    os.replace(tmp, out)
                except BaseException:
                    os.replace(backup, out)  # keep the old output rather than none
                    raise
                shutil.rmtree(backup, ignore_errors=True)
            else:
                os.replace(tmp, out)
        else:
            with open(tmp, "rb+") as fh:
                os.fsync(fh.fileno())
            os.replace(tmp, out)
    except BaseException as err:
        _remove(tmp)
        if isinstance(err, OSError):
            raise ScanWriteError(out, os_problem(err)) from None
        raise


def temporary_path(out: Path, *, is_dir: bool = False) -> Path:
    """A fresh temporary next to ``out`` (created empty when ``is_dir``), after removing stale ones.

    Creates ``out``'s folder if needed; raises ``OSError`` if that is impossible.
    """
    out.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(out)
    suffix = full_suffix(out)
    tmp = out.parent / f"{_temp_prefix(out)}{os.getpid()}-{uuid.uuid4().hex[:8]}{suffix}"
    if is_dir:
        tmp.mkdir()
    return tmp


def remove_stale_temporaries(out: Path) -> list[Path]:
    """Remove the temporaries of ``out`` left by killed writers (see the module docstring); return them."""
    suffix = full_suffix(out)
    pattern = re.compile(re.escape(_temp_prefix(out)) + r"(?:(\d+)-)?[0-9a-f]{8}" + re.escape(suffix) + "$")
    removed = []
    for candidate in glob.glob(glob.escape(str(out.parent / _temp_prefix(out))) + "*"):
        match = pattern.match(Path(candidate).name)
        if match is None:
            continue
        try:
            age = time.time() - os.lstat(candidate).st_mtime
        except OSError:
            continue
        pid = int(match.group(1)) if match.group(1) else None  # temporaries of older medgen carry no pid
        if age > STALE_SECONDS and (pid is None or not _running(pid)):
            _remove(Path(candidate))
            removed.append(Path(candidate))
    return removed


def check_output(
    path: str | Path, *, overwrite: bool = False, inputs: Iterable[str | Path] = (), is_dir: bool = False
) -> Path:
    """Check, before any work, that an output can be written at ``path``; write nothing there.

    Checks that ``path`` is not one of ``inputs``, does not exist (unless ``overwrite``; even then a
    folder cannot replace a file or the reverse), that no component of its folder is a file, and
    that the nearest existing folder on the way accepts a new file (a probe file is created and
    removed there; ``os.access`` alone is wrong for root and for read-only file systems).

    Args:
        is_dir: the output is a folder (a DICOM series, a batch output folder).
    Returns:
        ``path`` as a :class:`Path`.
    Raises:
        ScanWriteError: one line naming ``path`` and the problem.
    """
    out = check_output_path(path, overwrite=overwrite, inputs=inputs)
    if out.exists() and out.is_dir() != is_dir:
        want, got = ("folder", "file") if is_dir else ("file", "folder")
        raise ScanWriteError(out, f"exists and is a {got}; the output here is a {want}")
    folder = out.absolute().parent
    while not folder.exists() and not folder.is_symlink() and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir():
        what = "a file" if folder.is_file() else "a broken link"
        raise ScanWriteError(out, f"cannot create its folder: {folder} is {what}, not a folder")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise ScanWriteError(out, f"cannot create files in {folder} (permission denied)")
    try:
        fd, probe = tempfile.mkstemp(prefix=".medgen-probe-", dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as err:
        raise ScanWriteError(out, f"cannot create files in {folder} ({os_problem(err, with_file=False)})") from None
    return out


def os_problem(err: OSError, *, with_file: bool = True) -> str:
    """``"cannot write: REASON"`` for an ``OSError`` met while writing, e.g. no space left on device.

    ``with_file=False`` gives the reason alone."""
    reasons = {
        errno.ENOSPC: "no space left on device", errno.EDQUOT: "disk quota exceeded",
        errno.EACCES: "permission denied", errno.EPERM: "operation not permitted",
        errno.EROFS: "read-only file system", errno.ENOTDIR: "a component of the path is a file, not a folder",
        errno.EEXIST: "a file is in the way", errno.EISDIR: "a folder is in the way",
    }
    reason = reasons.get(err.errno) or (err.strerror or str(err)).lower()
    if not with_file:
        return reason
    name = err.filename
    if name and ".medgen-tmp-" not in str(name):  # a temporary's name would only confuse
        reason += f" ({name})"
    return f"cannot write: {reason}"


def _temp_prefix(out: Path) -> str:
    return f".{out.name.removesuffix(full_suffix(out))}.medgen-tmp-"


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def safe_join(root: str | Path, name: str) -> Path:
    """Join ``name`` under ``root``, refusing names that would escape it (``..``, absolute paths)."""
    base = Path(root).resolve()
    target = (base / name).resolve()
    if base != target and base not in target.parents:
        raise ScanWriteError(name, f"path escapes the output folder {root}")
    return target
