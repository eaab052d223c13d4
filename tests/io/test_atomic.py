"""Atomic writing (medgen.io.atomic): pre-flight output checks, one-line write errors, no temporaries left."""

from __future__ import annotations

import errno
import os
import signal
import time
from pathlib import Path

import nibabel as nib
import pytest

from medgen.errors import ScanWriteError
from medgen.io import check_save, load_scan, save_scan
from medgen.io.atomic import STALE_SECONDS, atomic_path, check_output

GONE_PID = 2**22 + 7  # above Linux's largest pid_max: never a running process


def _temporary(folder: Path, name: str, *, age: float, is_dir: bool = False) -> Path:
    path = folder / name
    if is_dir:
        path.mkdir()
        (path / "part").write_bytes(b"half")
    else:
        path.write_bytes(b"half-written")
    then = time.time() - age
    os.utime(path, (then, then))
    return path


def test_stale_temporaries_of_the_target_are_removed_on_the_next_write(tmp_path, mni_block):
    old = STALE_SECONDS + 60
    stale = [
        _temporary(tmp_path, f".scan.medgen-tmp-{GONE_PID}-0123abcd.nii.gz", age=old),
        _temporary(tmp_path, ".scan.medgen-tmp-89abcdef.nii.gz", age=old),  # older medgen: no pid
    ]
    kept = [
        _temporary(tmp_path, f".scan.medgen-tmp-{os.getpid()}-11112222.nii.gz", age=old),  # writer alive
        _temporary(tmp_path, f".scan.medgen-tmp-{GONE_PID}-33334444.nii.gz", age=10),  # too young to judge
        _temporary(tmp_path, f".other.medgen-tmp-{GONE_PID}-55556666.nii.gz", age=old),  # another target
        _temporary(tmp_path, f".scan.medgen-tmp-{GONE_PID}-77778888.nrrd", age=old),  # another target
    ]
    save_scan(mni_block, tmp_path / "scan.nii.gz")
    assert not any(p.exists() for p in stale)
    assert all(p.exists() for p in kept)
    folder_tmp = _temporary(tmp_path, f".ct.medgen-tmp-{GONE_PID}-9999aaaa.nrrd", age=old, is_dir=True)
    save_scan(mni_block, tmp_path / "ct.nrrd")  # SimpleITK writes in a temporary folder
    assert not folder_tmp.exists()


def test_temporary_left_by_a_killed_writer_is_cleaned_by_the_next_one(tmp_path, mni_block):
    target = tmp_path / "scan.nii.gz"
    pid = os.fork()
    if pid == 0:  # the writer: half a file, then SIGKILL (no cleanup can run)
        with atomic_path(target) as tmp:
            tmp.write_bytes(b"half a scan")
            os.kill(os.getpid(), signal.SIGKILL)
    os.waitpid(pid, 0)
    left = [p for p in tmp_path.iterdir() if ".medgen-tmp-" in p.name]
    assert len(left) == 1 and f"-{pid}-" in left[0].name and not target.exists()
    then = time.time() - STALE_SECONDS - 1
    os.utime(left[0], (then, then))
    save_scan(mni_block, target)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scan.json", "scan.nii.gz"]  # image and sidecar


@pytest.mark.parametrize("failure", [errno.ENOSPC, errno.EACCES, errno.EROFS])
def test_os_error_while_writing_is_one_line_and_leaves_nothing(tmp_path, mni_block, monkeypatch, failure):
    def full_disk(img, filename):
        Path(filename).write_bytes(b"partial")
        raise OSError(failure, os.strerror(failure), str(filename))

    monkeypatch.setattr(nib, "save", full_disk)
    with pytest.raises(ScanWriteError) as err:
        save_scan(mni_block, tmp_path / "out" / "scan.nii.gz")
    message = str(err.value)
    assert "scan.nii.gz: cannot write: " in message and "\n" not in message and ".medgen-tmp-" not in message
    assert [p.name for p in (tmp_path / "out").iterdir()] == []


def test_replacing_a_folder_output_keeps_the_old_one_if_the_move_fails(tmp_path, monkeypatch):
    out = tmp_path / "series"
    out.mkdir()
    (out / "old.dcm").write_bytes(b"old")
    real_replace = os.replace

    def failing_second_move(src, dst):
        if ".medgen-tmp-" in str(src):
            raise OSError(errno.EIO, "I/O error", str(dst))
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", failing_second_move)
    with pytest.raises(ScanWriteError, match="i/o error"), atomic_path(out, overwrite=True, is_dir=True) as tmp:
        (tmp / "new.dcm").write_bytes(b"new")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["series"]
    assert (out / "old.dcm").read_bytes() == b"old"


def _output_cases(tmp_path: Path) -> dict[str, tuple[Path, dict, str]]:
    (tmp_path / "afile").write_text("not a folder")
    (tmp_path / "exists.nii.gz").write_bytes(b"x")
    (tmp_path / "folder.nii.gz").mkdir()
    (tmp_path / "input.nii.gz").write_bytes(b"x")
    return {
        "parent is a file": (tmp_path / "afile" / "x.nii.gz", {}, "afile is a file, not a folder"),
        "ancestor is a file": (tmp_path / "afile" / "a" / "b" / "x.nii.gz", {}, "afile is a file"),
        "unwritable folder": (Path("/proc/medgen-test/x.nii.gz"), {}, "cannot create files in /proc"),
        "exists": (tmp_path / "exists.nii.gz", {}, "already exists"),
        "folder where a file goes": (tmp_path / "folder.nii.gz", {"overwrite": True}, "is a folder"),
        "file where a folder goes": (tmp_path / "afile", {"overwrite": True, "is_dir": True}, "is a file"),
        "same as input": (tmp_path / "input.nii.gz", {"overwrite": True, "inputs": [tmp_path / "input.nii.gz"]},
                          "same as an input"),
    }


@pytest.mark.parametrize("case", ["parent is a file", "ancestor is a file", "unwritable folder", "exists",
                                  "folder where a file goes", "file where a folder goes", "same as input"])
def test_check_output_refuses_in_one_line_and_writes_nothing(tmp_path, case):
    path, options, text = _output_cases(tmp_path)[case]
    before = sorted(p.name for p in tmp_path.rglob("*"))
    with pytest.raises(ScanWriteError, match=text) as err:
        check_output(path, **options)
    assert str(err.value).startswith(str(path)) and "\n" not in str(err.value)
    assert sorted(p.name for p in tmp_path.rglob("*")) == before


def test_check_output_without_write_permission(tmp_path, monkeypatch):
    # root writes anywhere, so a read-only folder is simulated: os.access says no
    monkeypatch.setattr(os, "access", lambda path, mode: False)
    with pytest.raises(ScanWriteError, match="permission denied"):
        check_output(tmp_path / "x.nii.gz")


def test_check_output_accepts_a_new_nested_folder_without_creating_it(tmp_path, mni_block):
    target = tmp_path / "new" / "deeper" / "scan.nii.gz"
    assert check_output(target) == target
    assert list(tmp_path.iterdir()) == []
    assert check_save(tmp_path / "series.dcm") == tmp_path / "series"  # DICOM: the folder it writes
    save_scan(mni_block, target)
    assert load_scan(target).shape == mni_block.shape


def test_check_save_refuses_an_unknown_format_up_front(tmp_path):
    with pytest.raises(ScanWriteError, match="unsupported output format"):
        check_save(tmp_path / "x.png")
