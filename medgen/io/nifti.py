"""NIfTI (.nii, .nii.gz) reading and writing with nibabel, losing neither geometry nor labels."""

from __future__ import annotations

import contextlib
import gzip
import json
import logging
import math
import warnings
import zlib
from collections.abc import Iterator
from pathlib import Path

import nibabel as nib
import numpy as np
import torch
from monai.data import MetaTensor

from medgen.errors import MedgenWarning, ScanReadError, ScanWriteError
from medgen.io.atomic import atomic_path, full_suffix
from medgen.io.checks import check_data_size, check_shape, check_volume, decompressed_size
from medgen.io.meta import affine_of, make_scan, meta_of, usable_affine
from medgen.io.provenance import summary

SIDECAR_KEYS = ("modality", "units", "series_description", "provenance", "synthetic")
# nibabel allocates (and zero-fills) the declared size before reading a .nii.gz; below this many
# declared bytes that costs less than decompressing the file twice, so only larger ones are counted first.
_COUNT_GZIP_ABOVE = 256 * 2**20


def sidecar_path(path: str | Path) -> Path:
    """The JSON sidecar next to an image file: ``scan.nii.gz`` → ``scan.json``."""
    p = Path(path)
    return p.with_name(p.name[: len(p.name) - len(full_suffix(p))] + ".json")


def read_nifti(path: str | Path) -> MetaTensor:
    """Read a NIfTI-1/2 file as a ``(C, X, Y, Z)`` float32 scan with its RAS affine.

    3D files give ``C = 1``; a 4th dimension becomes channels. Scaling (``scl_slope``/``scl_inter``)
    is applied. A JSON sidecar written by medgen (or a BIDS-like sidecar with ``Modality``) fills
    modality, units and provenance.

    Geometry follows nibabel's order: the sform if its code is set, else the qform, else the
    pixdim-scaled base affine (nibabel's affine for a header with neither). A coded sform or qform
    that is all zeros, singular or not finite is skipped like an uncoded one (as ITK skips an
    unusable sform), and a :class:`~medgen.errors.MedgenWarning` naming the file says which was used.
    No usable affine at all is a :class:`ScanReadError`.

    The header's declared size is checked against the memory budget and the data in the file
    before anything is allocated (see :mod:`medgen.io.checks`).
    """
    path = Path(path)
    try:
        with _header_fixes_as_warning(path):
            img = nib.load(str(path))
        _check_declared_data(img, path)
        data = np.asarray(img.get_fdata(dtype=np.float32))
    except (EOFError, zlib.error, gzip.BadGzipFile) as err:
        raise ScanReadError(path, f"truncated or corrupt compressed file ({err})") from None
    except nib.filebasedimages.ImageFileError:
        raise ScanReadError(path, "not a NIfTI image (header unreadable)") from None
    except (OSError, ValueError) as err:
        raise ScanReadError(path, f"cannot read NIfTI data: {err}") from None
    if data.ndim == 5 and data.shape[3] == 1:  # NIfTI vector images put components in dim 5
        data = data[:, :, :, 0, :]
    if data.ndim == 4:
        data = np.moveaxis(data, -1, 0)
    elif data.ndim in (2, 3):
        data = data[None]
    check_volume(data, path)
    meta = {
        "filename_or_obj": str(path),
        "format": "nifti",
        "source_dtype": str(img.get_data_dtype()),
    }
    meta.update(_read_provenance(path, img.header))
    return make_scan(data, _usable_affine(img.header, path), **meta)


@contextlib.contextmanager
def _header_fixes_as_warning(path: Path) -> Iterator[None]:
    """nibabel logs the header fields it repairs (e.g. a zero pixdim) without the file name: turn
    those log lines into one :class:`MedgenWarning` that names it."""
    fixes: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: fixes.append(record.getMessage())
    logger = logging.getLogger("nibabel.global")
    saved = logger.handlers, logger.propagate
    logger.handlers, logger.propagate = [handler], False
    try:
        yield
    finally:
        logger.handlers, logger.propagate = saved
    if fixes:
        warnings.warn(MedgenWarning(f"{path}: header repaired on read: {'; '.join(fixes)}"), stacklevel=4)


def _check_declared_data(img: nib.Nifti1Image, path: Path) -> None:
    """Refuse a header declaring more voxels than the budget, or more bytes than the file holds."""
    header = img.header
    shape = header.get_data_shape()
    check_shape(shape, path)
    declared = math.prod(int(s) for s in shape) * header.get_data_dtype().itemsize
    offset = int(img.dataobj.offset)  # the header's vox_offset may be 0 for a single .nii file
    if full_suffix(path) != ".nii.gz":
        check_data_size(path, declared, path.stat().st_size - offset)
    elif declared > _COUNT_GZIP_ABOVE:
        with open(path, "rb") as fh:
            held = decompressed_size(fh, offset + declared) - offset
        check_data_size(path, declared, held, compressed=True)


def _usable_affine(header: nib.Nifti1Header, path: Path) -> np.ndarray:
    """The sform, qform or base affine, the first usable one in that order; see :func:`read_nifti`."""
    skipped = []
    for name, code_key in (("sform", "sform_code"), ("qform", "qform_code")):
        if int(header[code_key]) == 0:
            continue
        try:
            affine = header.get_sform() if name == "sform" else header.get_qform()
        except ValueError:  # a quaternion that is not a rotation
            affine = None
        if affine is not None and usable_affine(affine):
            break
        skipped.append(name)
    else:
        name, affine = "pixdim-scaled base affine (orientation assumed LAS, origin at the centre)", \
            header.get_base_affine()
        if not usable_affine(affine):
            raise ScanReadError(path, f"no usable geometry: {' and '.join(skipped) or 'no sform/qform'} and "
                                      f"pixdim {tuple(float(v) for v in header['pixdim'][1:4])} are "
                                      "singular or not finite")
    if skipped:
        warnings.warn(MedgenWarning(f"{path}: {' and '.join(skipped)} {'is' if len(skipped) == 1 else 'are'} "
                                    f"all zeros, singular or not finite; using the {name} instead"), stacklevel=3)
    return affine


def write_nifti(
    scan: torch.Tensor,
    path: str | Path,
    *,
    dtype: str | np.dtype | None = None,
    overwrite: bool = False,
    inputs=(),
) -> Path:
    """Write ``scan`` ``(C, X, Y, Z)`` to NIfTI at ``path`` atomically.

    Args:
        dtype: on-disk voxel type. ``None`` keeps integer tensors integer (smallest fitting type)
            and writes floats as float32. Integer types are written exactly: values are rounded,
            range-checked and stored with ``scl_slope = 1``, ``scl_inter = 0``, so label 3 reads back
            as 3, never 2.9999.
    Returns:
        The written path. A JSON sidecar (``scan.json``) next to it keeps what NIfTI has no field
        for: modality, units, series description, provenance and the synthetic flag (the short
        provenance also goes into the header's ``descrip``).
    """
    path = Path(path)
    meta = meta_of(scan)
    array = _to_numpy(scan)
    if array.ndim == 4:
        array = array[0] if array.shape[0] == 1 else np.moveaxis(array, 0, -1)
    out_dtype = _choose_dtype(array, dtype, path)
    if np.issubdtype(out_dtype, np.integer):
        array = _exact_integers(array, out_dtype, path)
    else:
        array = array.astype(out_dtype)
    affine = affine_of(scan)
    img = nib.Nifti1Image(array, affine)
    img.header.set_data_dtype(out_dtype)
    img.header.set_slope_inter(1.0, 0.0)
    img.set_sform(affine, code=1)
    img.set_qform(affine, code=1)
    img.header.set_xyzt_units("mm", "sec")
    text = summary(meta)
    if text:
        img.header["descrip"] = text.encode("ascii", "replace")[:79]
    record = {k: meta[k] for k in SIDECAR_KEYS if k in meta and meta[k] not in (None, "", [])}
    with atomic_path(path, overwrite=overwrite, inputs=inputs) as tmp:
        nib.save(img, str(tmp))
        if record:
            _write_sidecar(sidecar_path(path), record, overwrite=overwrite)
    return path


def _to_numpy(scan: torch.Tensor | np.ndarray) -> np.ndarray:
    if isinstance(scan, torch.Tensor):
        return scan.detach().cpu().as_tensor().numpy() if isinstance(scan, MetaTensor) else scan.detach().cpu().numpy()
    return np.asarray(scan)


def _choose_dtype(array: np.ndarray, dtype, path: Path) -> np.dtype:
    if dtype is not None:
        try:
            return np.dtype(dtype)
        except TypeError:
            raise ScanWriteError(path, f"unknown dtype {dtype!r}") from None
    if np.issubdtype(array.dtype, np.integer) or array.dtype == bool:
        lo, hi = (int(array.min()), int(array.max())) if array.size else (0, 0)
        for cand in (np.uint8, np.int16, np.int32):
            info = np.iinfo(cand)
            if info.min <= lo and hi <= info.max:
                return np.dtype(cand)
        return np.dtype(np.int64)
    return np.dtype(np.float32)


def _exact_integers(array: np.ndarray, dtype: np.dtype, path: Path) -> np.ndarray:
    rounded = np.rint(array)
    info = np.iinfo(dtype)
    if rounded.size and (rounded.min() < info.min or rounded.max() > info.max):
        raise ScanWriteError(
            path, f"values {rounded.min():g}..{rounded.max():g} do not fit dtype {dtype.name}"
        )
    return rounded.astype(dtype)


def _read_provenance(path: Path, header: nib.Nifti1Header) -> dict:
    """Sidecar fields; the header's ``descrip`` keeps the synthetic mark if the sidecar is lost or broken."""
    out = _read_sidecar(path)
    descrip = header["descrip"].item().split(b"\x00")[0].decode("ascii", "replace")
    if descrip.startswith("medgen SYNTHETIC"):  # once synthetic, always synthetic (see provenance.mark)
        out["synthetic"] = True
        out.setdefault("provenance", [{"operation": "unknown (sidecar missing or unreadable)", "summary": descrip}])
    return out


def _read_sidecar(path: Path) -> dict:
    side = sidecar_path(path)
    if not side.is_file():
        return {}
    try:
        data = json.loads(side.read_text())
    except (OSError, ValueError) as err:
        data = err
    if not isinstance(data, dict):  # a foreign or broken sidecar must not make the image unreadable
        problem = f"unreadable ({data})" if isinstance(data, Exception) else "not a JSON object"
        warnings.warn(MedgenWarning(f"{side}: sidecar ignored, {problem}; provenance comes from the NIfTI "
                                    "header's descrip only"), stacklevel=4)
        return {}
    out = {k: data[k] for k in SIDECAR_KEYS if k in data}
    if "Modality" in data and "modality" not in out:  # BIDS-style sidecar
        out["modality"] = str(data["Modality"])
    return out


def _write_sidecar(path: Path, record: dict, *, overwrite: bool) -> None:
    with atomic_path(path, overwrite=overwrite) as tmp:
        tmp.write_text(json.dumps(record, indent=2, default=str))
