"""Bad-input matrix (issue #23): broken scans through ``medgen info``, ``convert`` and ``denoise``.

Every case builds its input in ``tmp_path`` (lying headers, all-zero affines, truncated voxel data, in
NIfTI, NRRD, MHA/MHD and DICOM variants) and runs the real CLI (``CliRunner`` on ``medgen.cli.app``).
What README promises is checked for each case and command:

- exit code 1 with exactly one ``error: ...`` line naming the file; or, for the documented zero-affine
  fallback (:func:`medgen.io.nifti.read_nifti`), exit code 0 with one ``warning: ...`` line naming it;
- no traceback; every input byte-identical; nothing created outside the output folder and no
  temporary left inside it.

Lying headers are also read by ``medgen info`` in child processes whose peak RSS must stay within
1.5 GB (the torch/MONAI import alone is ~0.5 GB), whatever size the header declares.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import subprocess
import sys
import zlib
from collections.abc import Callable
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
from dicom_fixtures import lps_affine, write_classic_series
from typer.testing import CliRunner

from medgen.cli import app

runner = CliRunner()
PEAK_RSS_LIMIT_KB = int(1.5 * 2**20)  # 1.5 GB; ru_maxrss is in kB on Linux
BODY = bytes(480)  # the voxel data a lying file really holds


# -- builders: each writes one bad input under `folder` and returns its path ---------------------------


def _nifti_bytes(shape, dtype, body: bytes, geometry: Callable[[nib.Nifti1Header], None] | None = None) -> bytes:
    """A single-file NIfTI-1 (header, empty extension flag, ``body``), header fields set by hand."""
    header = nib.Nifti1Header()
    header.set_data_shape(shape)
    header.set_data_dtype(dtype)
    header.set_sform(np.eye(4), code=1)
    header["vox_offset"] = 352
    if geometry is not None:
        geometry(header)
    return header.binaryblock + bytes(4) + body


def lying_nifti(shape, dtype=np.float32, gz: bool = False) -> Callable[[Path], Path]:
    def build(folder: Path) -> Path:
        path = folder / f"lying.nii{'.gz' if gz else ''}"
        data = _nifti_bytes(shape, dtype, BODY)
        path.write_bytes(gzip.compress(data) if gz else data)
        return path
    return build


def _zero_forms(header: nib.Nifti1Header) -> None:
    """sform and qform all zeros (pixdim too), both coded as scanner-anatomical: what the tester sent."""
    for key in ("srow_x", "srow_y", "srow_z", "quatern_b", "quatern_c", "quatern_d",
                "qoffset_x", "qoffset_y", "qoffset_z"):
        header[key] = 0
    header["pixdim"][1:4] = 0
    header["sform_code"] = header["qform_code"] = 1


def _nan_sform_no_qform(header: nib.Nifti1Header) -> None:
    header["srow_x"] = [np.nan, 0, 0, 0]
    header["qform_code"] = 0


def nifti_16(geometry=None, gz: bool = False) -> Callable[[Path], Path]:
    """A 16³ float32 scan of noise; ``geometry(header)`` breaks its affine (identity sform if None)."""
    def build(folder: Path) -> Path:
        path = folder / f"{'scan' if geometry is None else 'zero_affine'}.nii{'.gz' if gz else ''}"
        voxels = np.random.default_rng(0).uniform(0, 100, (16, 16, 16)).astype(np.float32)
        data = _nifti_bytes(voxels.shape, np.float32, voxels.tobytes(order="F"), geometry)
        path.write_bytes(gzip.compress(data) if gz else data)
        return path
    return build


def _nrrd_header(sizes, encoding: str, extra: str = "") -> bytes:
    return (f"NRRD0004\ntype: float\ndimension: 3\nspace: left-posterior-superior\nsizes: {sizes}\n"
            f"space directions: (1,0,0) (0,1,0) (0,0,1)\nendian: little\nencoding: {encoding}\n"
            f"space origin: (0,0,0)\n{extra}").encode()


def lying_nrrd(sizes: str, layout: str) -> Callable[[Path], Path]:
    """``layout``: ``raw`` / ``gzip`` (data attached) or ``detached`` (``.nhdr`` + ``.raw``)."""
    def build(folder: Path) -> Path:
        if layout == "detached":
            (folder / "lying.raw").write_bytes(BODY)
            path = folder / "lying.nhdr"
            path.write_bytes(_nrrd_header(sizes, "raw", "data file: lying.raw\n"))
            return path
        path = folder / f"lying_{layout}.nrrd"
        body = gzip.compress(BODY) if layout == "gzip" else BODY
        path.write_bytes(_nrrd_header(sizes, layout) + b"\n" + body)
        return path
    return build


def _meta_header(sizes: str, compressed: bool, data_file: str, size: int = 0) -> bytes:
    return (f"ObjectType = Image\nNDims = 3\nBinaryData = True\nBinaryDataByteOrderMSB = False\n"
            f"CompressedData = {compressed}\n{f'CompressedDataSize = {size}' + chr(10) if compressed else ''}"
            f"TransformMatrix = 1 0 0 0 1 0 0 0 1\nOffset = 0 0 0\nElementSpacing = 1 1 1\nDimSize = {sizes}\n"
            f"ElementType = MET_FLOAT\nElementDataFile = {data_file}\n").encode()


def lying_metaimage(sizes: str, layout: str) -> Callable[[Path], Path]:
    """``layout``: ``raw`` / ``zlib`` (``.mha``, data attached) or ``detached`` (``.mhd`` + ``.raw``)."""
    def build(folder: Path) -> Path:
        if layout == "detached":
            (folder / "lying_data.raw").write_bytes(BODY)
            path = folder / "lying.mhd"
            path.write_bytes(_meta_header(sizes, False, "lying_data.raw"))
            return path
        body = zlib.compress(BODY) if layout == "zlib" else BODY
        path = folder / f"lying_{layout}.mha"
        path.write_bytes(_meta_header(sizes, layout == "zlib", "LOCAL", len(body)) + body)
        return path
    return build


def singular_nrrd(folder: Path) -> Path:
    path = folder / "singular.nrrd"
    header = _nrrd_header("8 8 8", "raw").replace(b"(0,1,0) (0,0,1)", b"(1,0,0) (0,0,1)")
    path.write_bytes(header + b"\n" + bytes(8 * 8 * 8 * 4))
    return path


def dicom_series(change: Callable[[Path, pydicom.Dataset], None]) -> Callable[[Path], Path]:
    """A 16 x 16 x 4 CT series, each file edited by ``change(path, dataset)``."""
    def build(folder: Path) -> Path:
        stored = np.arange(16 * 16 * 4, dtype=np.int16).reshape(16, 16, 4)
        series = folder / "series"
        for path in write_classic_series(series, stored, lps_affine(np.eye(3), (1, 1, 2), (0, 0, 0))):
            change(path, pydicom.dcmread(path))
        return series
    return build


def _lying_rows(path: Path, ds: pydicom.Dataset) -> None:
    ds.Rows = ds.Columns = 4096  # 32 MiB declared per slice, 512 bytes stored
    ds.save_as(path)


def _cut_pixels(path: Path, ds: pydicom.Dataset) -> None:
    if path.name == "slice002.dcm":
        path.write_bytes(path.read_bytes()[:-100])


# name → (builder, expected outcome: "error" or "fallback", text the message must contain)
CASES: dict[str, tuple[Callable[[Path], Path], str, str]] = {
    "nifti-zero-sform-qform": (nifti_16(_zero_forms), "fallback", "sform is all zeros"),
    "nifti-gz-zero-sform-qform": (nifti_16(_zero_forms, gz=True), "fallback", "using the qform"),
    "nifti-nan-sform-no-qform": (nifti_16(_nan_sform_no_qform), "fallback", "base affine"),
    "nifti-lying-float32": (lying_nifti((800, 800, 800)), "error", "holds only 480"),
    "nifti-lying-int16-other-size": (lying_nifti((1000, 900, 1100), np.int16), "error", "holds only 480"),
    "nifti-gz-lying": (lying_nifti((800, 800, 800), gz=True), "error", "expands to only 480"),
    "nifti-gz-lying-small": (lying_nifti((400, 400, 300), gz=True), "error", "cannot read NIfTI data"),
    "nifti-over-budget": (lying_nifti((1100, 1100, 1100)), "error", "memory budget"),
    "nrrd-lying-raw": (lying_nrrd("800 800 800", "raw"), "error", "holds only 480"),
    "nrrd-lying-gzip": (lying_nrrd("700 800 900", "gzip"), "error", "expands to only 480"),
    "nrrd-lying-detached": (lying_nrrd("800 800 800", "detached"), "error", "holds only 480"),
    "mha-lying-raw": (lying_metaimage("800 800 800", "raw"), "error", "holds only 480"),
    "mha-lying-zlib": (lying_metaimage("800 800 800", "zlib"), "error", "expands to only 480"),
    "mhd-lying-detached": (lying_metaimage("900 800 700", "detached"), "error", "holds only 480"),
    "nrrd-singular-direction": (singular_nrrd, "error", "determinant is 0"),
    "dicom-lying-rows-columns": (dicom_series(_lying_rows), "error", "less than expected"),
    "dicom-truncated-pixel-data": (dicom_series(_cut_pixels), "error", "slice002.dcm"),
}
LYING = [name for name in CASES if "lying" in name or "budget" in name]
COMMANDS = {
    "info": lambda src, out: ["info", str(src)],
    "convert": lambda src, out: ["convert", str(src), str(out / "converted.nii.gz")],
    "denoise": lambda src, out: ["denoise", str(src), str(out / "denoised.nii.gz"), "--refine", "0"],
}


def tree(root: Path, skip: str | None = None) -> dict[str, str]:
    """Every file and folder under ``root`` but ``skip``: relative path → sha256 (``"dir"`` for folders)."""
    return {str(p.relative_to(root)): "dir" if p.is_dir() else hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if skip is None or p.relative_to(root).parts[0] != skip}


@pytest.mark.parametrize("command", list(COMMANDS))
@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_is_one_line_and_touches_nothing(tmp_path, case, command):
    build, outcome, text = CASES[case]
    inputs, out = tmp_path / "inputs", tmp_path / "out"
    inputs.mkdir()
    out.mkdir()
    src = build(inputs)
    before, beside = tree(tmp_path, skip="out"), sorted(p.name for p in tmp_path.parent.iterdir())

    res = runner.invoke(app, COMMANDS[command](src, out))

    output = res.output
    assert isinstance(res.exception, SystemExit | None), f"raised {res.exception!r}:\n{output}"
    assert "Traceback" not in output
    kind = "warning" if outcome == "fallback" else "error"
    lines = [line for line in output.splitlines() if line.startswith(f"{kind}: ")]
    assert lines and all(src.name in line for line in lines) and any(text in line for line in lines), output
    if outcome == "fallback":  # one line per repair: here nibabel's zero-pixdim fix, then the affine
        assert res.exit_code == 0, output
        assert "error:" not in output
    else:
        assert len(lines) == 1, output
        assert res.exit_code == 1, output
        assert [line for line in output.splitlines() if line.strip()] == lines, "nothing but the error line"
        assert list(out.iterdir()) == []
    assert tree(tmp_path, skip="out") == before, "an input changed or a file appeared outside the output folder"
    assert sorted(p.name for p in tmp_path.parent.iterdir()) == beside
    assert not [p for p in out.rglob("*") if ".medgen-tmp-" in p.name]


# Runs `medgen info FILE` for every lying case in forked children of one Python process that has
# imported the CLI (the same baseline as `python -m medgen info`, paid once instead of per case), and
# reads each child's own peak RSS with os.wait4.
_PEAK_RSS = r"""
import json, os, sys
import medgen.cli
results = {}
for path in sys.argv[1:]:
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.dup2(write_end, 1)
        os.dup2(write_end, 2)
        try:
            medgen.cli.main(["info", path])
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as fh:
        output = fh.read().decode(errors="replace")
    _, status, usage = os.wait4(pid, 0)
    results[path] = {"rc": os.waitstatus_to_exitcode(status), "output": output, "maxrss_kb": usage.ru_maxrss}
print(json.dumps(results))
"""


@pytest.fixture(scope="module")
def peak_rss(tmp_path_factory) -> dict[str, dict]:
    """``medgen info`` on every lying case in a child process: case → exit code, output, peak RSS (kB)."""
    paths = {}
    for name in LYING:
        folder = tmp_path_factory.mktemp(name)
        paths[name] = str(CASES[name][0](folder))
    proc = subprocess.run([sys.executable, "-c", _PEAK_RSS, *paths.values()], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    results = json.loads(proc.stdout.strip().splitlines()[-1])
    return {name: results[path] for name, path in paths.items()}


@pytest.mark.parametrize("case", LYING)
def test_lying_header_fails_within_bounded_memory(peak_rss, case):
    result = peak_rss[case]
    assert result["rc"] == 1 and "Traceback" not in result["output"], result["output"]
    assert result["maxrss_kb"] <= PEAK_RSS_LIMIT_KB, f"peak RSS {result['maxrss_kb'] / 2**20:.2f} GB"


# -- outputs that cannot be written fail before any work ------------------------------------------------

OUTPUTS = {
    "parent is a file": (lambda tmp: tmp / "afile" / "out.nii.gz", "is a file, not a folder"),
    "ancestor is a file": (lambda tmp: tmp / "afile" / "deeper" / "out.nii.gz", "is a file, not a folder"),
    "unwritable folder": (lambda tmp: Path("/proc/medgen-test/out.nii.gz"), "cannot create files in /proc"),
    "existing output": (lambda tmp: tmp / "existing.nii.gz", "already exists"),
}
ENHANCE = {
    "convert": lambda src, dst: ["convert", str(src), str(dst)],
    "denoise": lambda src, dst: ["denoise", str(src), str(dst), "--refine", "0"],
    "superres": lambda src, dst: ["superres", str(src), str(dst), "--factor", "2", "--method", "cubic"],
    "denoise-folder": lambda src, dst: ["denoise", str(src.parent), str(dst.parent / "batch_out"), "--refine", "0"],
}


# A batch writes into an existing folder by design, so that pair is not a bad output.
OUTPUT_CASES = [(p, c) for p in OUTPUTS for c in ENHANCE if (p, c) != ("existing output", "denoise-folder")]


@pytest.mark.parametrize(("problem", "command"), OUTPUT_CASES)
def test_unwritable_output_fails_before_the_work(tmp_path, monkeypatch, problem, command):

    def no_work(*args, **kwargs):
        raise AssertionError("the work started before the output was checked")

    for target in ("medgen.cli.io_cmds.load_scan", "medgen.cli.enhance.load_scan",
                   "medgen.cli.enhance.denoise_scan", "medgen.cli.enhance.superres_scan"):
        monkeypatch.setattr(target, no_work)
    (tmp_path / "afile").write_text("a file, not a folder")
    (tmp_path / "existing.nii.gz").write_bytes(b"keep me")
    (tmp_path / "inputs").mkdir()
    src = nifti_16()(tmp_path / "inputs")
    dst, text = OUTPUTS[problem]
    dst = dst(tmp_path)
    before = tree(tmp_path)

    res = runner.invoke(app, ENHANCE[command](src, dst))

    assert res.exit_code == 1 and isinstance(res.exception, SystemExit), res.output
    lines = [line for line in res.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and text in lines[0], res.output
    assert tree(tmp_path) == before
