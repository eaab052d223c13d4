"""Read a DICOM series folder or an enhanced multi-frame DICOM file into a medgen scan.

Geometry (DICOM patient space is LPS, millimetres):

- ``ImageOrientationPatient`` (IOP) holds two unit vectors: ``r`` along a row (direction of
  increasing column index) and ``c`` along a column (increasing row index). Their cross product
  ``n = r x c`` is the slice normal.
- Slices are ordered by ``ImagePositionPatient`` (IPP, the centre of the first voxel) projected on
  ``n``, never by file name or ``InstanceNumber``. The stack runs along ``+n`` unless the
  instance numbers (or, in a multi-frame file, the frame order) run strictly the other way; then
  that acquisition order is kept, so a series written from a left-handed affine (e.g. ``LIA``)
  reads back with the same array and affine.
- Missing or unevenly spaced slices raise :class:`ScanReadError` naming the gap; nothing is ever
  interpolated.

The result is a ``(1, X, Y, Z)`` float32 MetaTensor: axis 0 = column index ``i`` (along ``r``),
axis 1 = row index ``j`` (along ``c``), axis 2 = slice. Voxels are rescaled to real-world values
(``value = stored * RescaleSlope + RescaleIntercept``, per slice or per frame; HU for CT). The
LPS affine ``[r * col_spacing, c * row_spacing, slice_step, IPP_first]`` is converted to RAS by
negating its first two rows.

Example:
    >>> scan = read_dicom("patient01/CT_head")  # doctest: +SKIP
    >>> scan.shape, scan.meta["units"]  # doctest: +SKIP
    (torch.Size([1, 512, 512, 120]), 'HU')
"""

from __future__ import annotations

import struct
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
from monai.data import MetaTensor
from pydicom.dataset import Dataset
from pydicom.errors import BytesLengthException, InvalidDicomError
from pydicom.pixels import get_decoder

from medgen.errors import ScanReadError
from medgen.io.checks import check_shape, check_volume
from medgen.io.meta import make_scan, usable_affine

LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])

# Patient/study/series tags kept in meta["dicom"]: what a derived series needs, plus context.
_KEPT_TAGS = (
    "PatientName", "PatientID", "PatientBirthDate", "PatientSex", "PatientAge",
    "StudyInstanceUID", "StudyDate", "StudyTime", "StudyID", "AccessionNumber", "StudyDescription",
    "ReferringPhysicianName", "FrameOfReferenceUID", "Modality", "SeriesInstanceUID", "SeriesNumber",
    "SeriesDescription", "SOPClassUID", "Manufacturer", "ManufacturerModelName", "BodyPartExamined",
    "PatientPosition", "SliceThickness", "ScanningSequence", "SequenceVariant", "EchoTime",
    "RepetitionTime", "MagneticFieldStrength", "KVP", "ConvolutionKernel",
)
_ORIENTATION_TOL = 1e-3  # IOP components written with few digits differ by ~1e-4 between slices
_PIP_HINT = "pip install medgen[dicom]"
_PIXEL_TAGS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")
# What pydicom raises on a corrupt or cut file (from fuzzing valid files with flipped bytes, cuts and
# garbage): parsing the header or a value, then decoding pixels. Anything else is a bug and shows as one.
_PARSE_ERRORS = (InvalidDicomError, BytesLengthException, OSError, EOFError, ValueError, TypeError, KeyError,
                 IndexError, NotImplementedError, OverflowError, struct.error)
_DECODE_ERRORS = (*_PARSE_ERRORS, AttributeError, RuntimeError)


@dataclass
class _Slice:
    """One 2D plane of the volume: a classic single-frame file, or one frame of a multi-frame file."""

    source: Path
    ipp: np.ndarray  # (3,) LPS mm
    iop: np.ndarray  # (6,)
    spacing: tuple[float, float]  # PixelSpacing: (row spacing, column spacing) mm
    order: float  # acquisition order hint: InstanceNumber or frame index (nan if unknown)
    frame: int = -1  # frame index in a multi-frame file, -1 for a single-frame file
    slope: float = 1.0
    intercept: float = 0.0


def is_dicom_file(path: Path) -> bool:
    """True if ``path`` is a DICOM file: ``DICM`` after the 128-byte preamble, or a preamble-less
    dataset whose header pydicom can parse (old ACR-NEMA style). Reads at most the header."""
    path = Path(path)
    if not path.is_file():
        return False
    try:
        with open(path, "rb") as fh:
            head = fh.read(132)
    except OSError:
        return False
    if head[128:132] == b"DICM":
        return True
    if head[:2] != b"\x08\x00":  # a raw dataset starts with a group-0008 element
        return False
    try:
        ds = pydicom.dcmread(path, force=True, stop_before_pixels=True)
    except _PARSE_ERRORS:
        return False
    return "SOPClassUID" in ds or "Modality" in ds


def read_dicom(path: str | Path, series_uid: str | None = None) -> MetaTensor:
    """Read a DICOM volume as a ``(1, X, Y, Z)`` float32 RAS scan.

    Args:
        path: a folder holding one (or several) classic single-slice series (not searched
            recursively; non-image DICOM and non-DICOM files are ignored), or one enhanced
            multi-frame file (Enhanced CT/MR, ...).
        series_uid: the SeriesInstanceUID to read when the folder holds several series.

    Returns:
        MetaTensor ``(1, X, Y, Z)`` in real-world units (HU for CT) with ``meta["modality"]``,
        ``["units"]``, ``["series_description"]``, ``["format"] == "dicom"`` and ``["dicom"]`` (patient,
        study and series tags plus ``SOPInstanceUIDs`` in slice order).

    Raises:
        ScanReadError: missing path, no image, several series and no ``series_uid``, a single slice,
            missing/uneven/duplicate slices, mixed orientations, truncated files, undecodable
            compressed pixel data.
    """
    path = Path(path)
    if path.is_dir():
        return _read_folder(path, series_uid)
    if not path.exists():
        raise ScanReadError(path, "no such file or folder")
    if not is_dicom_file(path):
        raise ScanReadError(path, "not a DICOM file")
    header = _read_header(path)
    if series_uid is not None and str(header.get("SeriesInstanceUID", "")) != series_uid:
        raise ScanReadError(path, f"file belongs to series {header.get('SeriesInstanceUID', '?')}, "
                                  f"not {series_uid}")
    if int(header.get("NumberOfFrames", 1) or 1) > 1:
        return _read_multiframe(path)
    raise ScanReadError(path, "a single 2D DICOM slice; a 3D volume needs the folder of its series")


# --- folders of classic single-frame files -------------------------------------------------------


def _read_folder(folder: Path, series_uid: str | None) -> MetaTensor:
    files = sorted(f for f in folder.iterdir() if f.is_file() and not f.name.startswith("."))
    series: dict[str, list[tuple[Path, Dataset]]] = defaultdict(list)
    skipped = 0
    for f in files:
        if not is_dicom_file(f):
            continue
        ds = _read_header(f)
        if _is_multiframe(ds) or _is_slice(ds):
            series[str(ds.get("SeriesInstanceUID", ""))].append((f, ds))
        else:
            skipped += 1
    if not series:
        raise ScanReadError(folder, f"no DICOM image slices found ({len(files)} files, "
                                    f"{skipped} non-image DICOM objects ignored)")
    uid = _choose_series(folder, series, series_uid)
    members = series[uid]
    if any(_is_multiframe(ds) for _, ds in members):
        if len(members) == 1:
            return _read_multiframe(members[0][0])
        raise ScanReadError(folder, f"series {uid} mixes {len(members)} files with multi-frame ones; "
                                    "pass one multi-frame file instead of the folder")
    slices = [_classic_slice(f, ds) for f, ds in members]
    ordered, affine = _stack_geometry(slices, folder)
    datasets = {f: ds for f, ds in members}
    sizes = {(int(ds.Rows), int(ds.Columns)) for _, ds in members}
    if len(sizes) > 1:
        raise ScanReadError(folder, f"slices have different Rows x Columns {sorted(sizes)}; not one volume")
    rows, columns = sizes.pop()
    check_shape((columns, rows, len(ordered)), folder)
    volume = np.stack([_slice_pixels(s) for s in ordered], axis=-1)
    first = datasets[ordered[0].source]
    extra = {"SOPInstanceUIDs": [str(datasets[s.source].SOPInstanceUID) for s in ordered]}
    return _to_scan(volume, affine, first, folder, extra)


def _choose_series(folder: Path, series: dict[str, list[tuple[Path, Dataset]]], uid: str | None) -> str:
    if uid is not None and uid in series:
        return uid
    if uid is None and len(series) == 1:
        return next(iter(series))
    listing = "; ".join(
        f"{key or '<no SeriesInstanceUID>'} ('{members[0][1].get('SeriesDescription', '')}', "
        f"{len(members)} {'file' if _is_multiframe(members[0][1]) else 'slices'})"
        for key, members in series.items()
    )
    problem = f"series {uid} not found" if uid is not None else f"{len(series)} series in one folder"
    raise ScanReadError(folder, f"{problem}; choose one with series_uid=: {listing}")


def _classic_slice(path: Path, ds: Dataset) -> _Slice:
    try:
        if len(ds.ImagePositionPatient) != 3 or len(ds.ImageOrientationPatient) != 6 or int(ds.Rows) < 1 \
                or int(ds.Columns) < 1:
            raise ScanReadError(path, "ImagePositionPatient needs 3 values, ImageOrientationPatient 6, "
                                      "Rows and Columns at least 1")
        return _Slice(
            source=path,
            ipp=np.array([float(v) for v in ds.ImagePositionPatient]),
            iop=np.array([float(v) for v in ds.ImageOrientationPatient]),
            spacing=_pixel_spacing(ds, path),
            order=float(ds.InstanceNumber) if ds.get("InstanceNumber") not in (None, "") else np.nan,
            slope=float(ds.get("RescaleSlope", 1.0) or 1.0),
            intercept=float(ds.get("RescaleIntercept", 0.0) or 0.0),
        )
    except _PARSE_ERRORS as exc:
        raise ScanReadError(path, f"unreadable geometry tags: {exc}") from None


def _slice_pixels(s: _Slice) -> np.ndarray:
    """Stored values of one classic slice rescaled to real-world values, shaped ``(X, Y)``."""
    ds = _read_full(s.source)
    return _rescale(_pixel_array(ds, s.source), s.slope, s.intercept).T


# --- enhanced multi-frame files --------------------------------------------------------------------


def _read_multiframe(path: Path) -> MetaTensor:
    ds = _read_full(path)
    try:
        n_frames, rows, columns = int(ds.get("NumberOfFrames", 1) or 1), int(ds.Rows), int(ds.Columns)
        check_shape((columns, rows, n_frames), path)
        slices = [_frame_slice(ds, path, k) for k in range(n_frames)]
    except _PARSE_ERRORS as exc:
        raise ScanReadError(path, f"unreadable frame geometry: {exc}") from None
    ordered, affine = _stack_geometry(slices, path, declared_spacing=_declared_spacing(ds))
    frames = _pixel_array(ds, path)
    if frames.ndim == 2:
        frames = frames[None]
    volume = np.stack([_rescale(frames[s.frame], s.slope, s.intercept).T for s in ordered], axis=-1)
    extra = {"SOPInstanceUIDs": [str(ds.SOPInstanceUID)], "frame_order": [s.frame for s in ordered]}
    return _to_scan(volume, affine, ds, path, extra)


def _functional(ds: Dataset, frame: int, sequence: str, attribute: str) -> Any:
    """``attribute`` of ``sequence`` for ``frame``: per-frame group first, then the shared group."""
    groups = []
    per_frame = ds.get("PerFrameFunctionalGroupsSequence")
    if per_frame is not None and frame < len(per_frame):
        groups.append(per_frame[frame])
    shared = ds.get("SharedFunctionalGroupsSequence")
    if shared:
        groups.append(shared[0])
    for group in groups:
        seq = group.get(sequence)
        if seq and attribute in seq[0]:
            return seq[0].get(attribute)
    return None


def _frame_slice(ds: Dataset, path: Path, frame: int) -> _Slice:
    ipp = _functional(ds, frame, "PlanePositionSequence", "ImagePositionPatient")
    iop = _functional(ds, frame, "PlaneOrientationSequence", "ImageOrientationPatient")
    spacing = _functional(ds, frame, "PixelMeasuresSequence", "PixelSpacing")
    if ipp is None or iop is None or spacing is None:
        raise ScanReadError(path, f"frame {frame + 1} lacks PlanePosition/PlaneOrientation/PixelMeasures "
                                  "functional groups; not a volume")
    slope = _functional(ds, frame, "PixelValueTransformationSequence", "RescaleSlope")
    intercept = _functional(ds, frame, "PixelValueTransformationSequence", "RescaleIntercept")
    return _Slice(
        source=path,
        ipp=np.array([float(v) for v in ipp]),
        iop=np.array([float(v) for v in iop]),
        spacing=(float(spacing[0]), float(spacing[1])),
        order=float(frame),
        frame=frame,
        slope=float(slope if slope not in (None, "") else ds.get("RescaleSlope", 1.0) or 1.0),
        intercept=float(intercept if intercept not in (None, "") else ds.get("RescaleIntercept", 0.0) or 0.0),
    )


def _declared_spacing(ds: Dataset) -> float | None:
    value = _functional(ds, 0, "PixelMeasuresSequence", "SpacingBetweenSlices")
    return abs(float(value)) if value not in (None, "") and float(value) != 0 else None


# --- geometry shared by both layouts ---------------------------------------------------------------


def _stack_geometry(
    slices: list[_Slice], where: Path, declared_spacing: float | None = None
) -> tuple[list[_Slice], np.ndarray]:
    """Order ``slices`` along the normal, check they form one evenly spaced stack, build the affine.

    Returns:
        The slices in array order and the 4x4 voxel-to-RAS affine (mm).
    """
    if len(slices) < 2:
        raise ScanReadError(where, "only one image slice; a 3D volume needs at least two")
    for s in slices:
        if not (np.all(np.isfinite(s.ipp)) and np.all(np.isfinite(s.iop)) and np.all(np.isfinite(s.spacing))):
            raise ScanReadError(where, f"ImagePositionPatient, ImageOrientationPatient or PixelSpacing of "
                                       f"{s.source.name} is not finite")
        if min(s.spacing) <= 0:
            raise ScanReadError(where, f"PixelSpacing {s.spacing} of {s.source.name} is not positive")
    first = slices[0]
    for s in slices[1:]:
        if np.abs(s.iop - first.iop).max() > _ORIENTATION_TOL:
            raise ScanReadError(where, f"slices have different orientations ({_fmt(first.iop)} in "
                                       f"{first.source.name} vs {_fmt(s.iop)} in {s.source.name}); "
                                       "not one volume")
        if not np.allclose(s.spacing, first.spacing, rtol=1e-4, atol=1e-4):
            raise ScanReadError(where, f"slices have different PixelSpacing ({first.spacing} vs {s.spacing})")
    row, col = first.iop[:3], first.iop[3:]
    normal = np.cross(row, col)
    if abs(np.linalg.norm(normal) - 1) > 1e-2 or abs(row @ col) > 1e-2:
        raise ScanReadError(where, f"ImageOrientationPatient {_fmt(first.iop)} is not two orthonormal vectors")
    normal /= np.linalg.norm(normal)

    ordered = sorted(slices, key=lambda s: float(s.ipp @ normal))
    positions = np.array([s.ipp @ normal for s in ordered])
    _check_spacing(ordered, positions, where, declared_spacing)
    orders = np.array([s.order for s in ordered])
    if np.all(np.isfinite(orders)) and np.all(np.diff(orders) < 0):
        ordered = ordered[::-1]  # keep the acquisition direction (see module docstring)

    n = len(ordered)
    step = (ordered[-1].ipp - ordered[0].ipp) / (n - 1)
    off_line = max(np.linalg.norm(s.ipp - (ordered[0].ipp + k * step)) for k, s in enumerate(ordered))
    if off_line > max(1e-2, 0.05 * np.linalg.norm(step)):
        raise ScanReadError(where, f"slice positions are not on one line (off by {off_line:.3f} mm); "
                                   "not one evenly spaced volume")
    lps = np.eye(4)
    lps[:3, 0] = row / np.linalg.norm(row) * first.spacing[1]
    lps[:3, 1] = col / np.linalg.norm(col) * first.spacing[0]
    lps[:3, 2] = step
    lps[:3, 3] = ordered[0].ipp
    if not usable_affine(lps):
        raise ScanReadError(where, "slice geometry gives a singular affine; not a volume")
    return ordered, LPS_TO_RAS @ lps


def _check_spacing(ordered: list[_Slice], positions: np.ndarray, where: Path, declared: float | None) -> None:
    """Raise on duplicate, missing or unevenly spaced slices (positions along the normal, mm)."""
    gaps = np.diff(positions)
    expected = declared if declared is not None else float(np.median(gaps))
    tol = max(1e-3, 0.01 * expected)
    dup = np.flatnonzero(gaps < tol)
    if dup.size:
        k = int(dup[0])
        raise ScanReadError(where, f"{dup.size} duplicate slice position(s), e.g. {positions[k]:.3f} mm along "
                                   f"the normal ({ordered[k].source.name}, {ordered[k + 1].source.name}); "
                                   "several volumes (echoes/time points) in one series are not supported")
    bad = np.flatnonzero(np.abs(gaps - expected) > tol)
    if not bad.size:
        return
    k = int(bad[0])
    gap, missing = float(gaps[k]), round(float(gaps[k]) / expected) - 1
    kind = (f"missing slice(s): about {missing} absent" if missing >= 1 and abs(gap - (missing + 1) * expected) <= tol
            else "uneven slice spacing")
    also = f"; {bad.size - 1} more irregular gap(s)" if bad.size > 1 else ""
    raise ScanReadError(where, f"{kind}: gap of {gap:.3f} mm between slices at {positions[k]:.3f} mm "
                               f"({ordered[k].source.name}) and {positions[k + 1]:.3f} mm "
                               f"({ordered[k + 1].source.name}) along the normal (expected spacing "
                               f"{expected:.3f} mm){also}; slices are never interpolated")


# --- pydicom access, with one-line errors ---------------------------------------------------------


def _read_header(path: Path) -> Dataset:
    """The dataset with large values (pixel data) left unread; raises if the file is cut short.

    pydicom reads a truncated file without complaint, so truncation shows as an image SOP class
    (or image pixel module) with no pixel data element left in the file.
    """
    try:
        ds = pydicom.dcmread(path, defer_size="4 KB", force=True)
        # pydicom decodes a value on first access: decode all but the deferred pixel data here, where
        # a corrupt value is caught
        _ = [ds[tag] for tag in ds.keys() if tag.group != 0x7FE0]
    except _PARSE_ERRORS as exc:
        raise ScanReadError(path, f"truncated or corrupt DICOM file ({type(exc).__name__}: {exc})") from None
    has_preamble = getattr(ds, "preamble", None) is not None
    if has_preamble and ("TransferSyntaxUID" not in ds.file_meta or not len(ds)):
        raise ScanReadError(path, "DICOM file ends inside its header; is the file truncated?")
    if not any(tag in ds for tag in _PIXEL_TAGS) and (_is_image_class(ds) or "Rows" in ds):
        raise ScanReadError(path, "image DICOM file without pixel data; is the file truncated?")
    return ds


def _is_image_class(ds: Dataset) -> bool:
    meta = getattr(ds, "file_meta", None)
    sop_class = ds.get("SOPClassUID") or (meta.get("MediaStorageSOPClassUID") if meta is not None else None)
    return sop_class is not None and "Image Storage" in pydicom.uid.UID(str(sop_class)).name


def _read_full(path: Path) -> Dataset:
    try:
        ds = pydicom.dcmread(path, force=True)
    except _PARSE_ERRORS as exc:
        raise ScanReadError(path, f"truncated or corrupt DICOM file ({type(exc).__name__}: {exc})") from None
    if "PixelData" not in ds:
        raise ScanReadError(path, "image DICOM file without pixel data; is the file truncated?")
    if "TransferSyntaxUID" not in ds.file_meta and ds.original_encoding[0] is not None:
        # preamble-less (ACR-NEMA style) file: no file meta, so name the encoding pydicom detected
        implicit, little = ds.original_encoding
        ds.file_meta.TransferSyntaxUID = (
            pydicom.uid.ImplicitVRLittleEndian if implicit
            else pydicom.uid.ExplicitVRLittleEndian if little else pydicom.uid.ExplicitVRBigEndian
        )
    return ds


def _pixel_array(ds: Dataset, path: Path) -> np.ndarray:
    """Decoded stored values: ``(Rows, Columns)`` or ``(frames, Rows, Columns)``."""
    if int(ds.get("SamplesPerPixel", 1)) != 1:
        raise ScanReadError(path, f"colour image ({ds.get('PhotometricInterpretation')}); "
                                  "only greyscale volumes are supported")
    syntax = ds.file_meta.get("TransferSyntaxUID") if hasattr(ds, "file_meta") else None
    if syntax is not None and syntax.is_compressed:
        try:
            available = get_decoder(syntax).is_available
        except NotImplementedError:
            available = False
        if not available:
            raise ScanReadError(path, f"cannot decode compressed pixel data with transfer syntax {syntax} "
                                      f"({syntax.name}); install the decoders: {_PIP_HINT}")
    try:
        return ds.pixel_array
    except _DECODE_ERRORS as exc:
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        if syntax is not None and syntax.is_compressed:
            raise ScanReadError(path, f"cannot decode {syntax.name} pixel data ({syntax}): {msg}; the file may "
                                      f"be truncated, or a decoder is missing: {_PIP_HINT}") from None
        raise ScanReadError(path, f"cannot read pixel data, is the file truncated? ({msg})") from None


def _rescale(stored: np.ndarray, slope: float, intercept: float) -> np.ndarray:
    return (stored.astype(np.float64) * slope + intercept).astype(np.float32)


def _pixel_spacing(ds: Dataset, path: Path) -> tuple[float, float]:
    spacing = ds.get("PixelSpacing") or ds.get("ImagerPixelSpacing")
    if not spacing or len(spacing) != 2:
        raise ScanReadError(path, "no PixelSpacing; cannot place the image in millimetres")
    return float(spacing[0]), float(spacing[1])


def _is_multiframe(ds: Dataset) -> bool:
    return int(ds.get("NumberOfFrames", 1) or 1) > 1 and "PerFrameFunctionalGroupsSequence" in ds


def _is_slice(ds: Dataset) -> bool:
    return all(tag in ds for tag in ("Rows", "Columns", "ImagePositionPatient", "ImageOrientationPatient"))


def _fmt(values: np.ndarray) -> str:
    return "[" + ", ".join(f"{v:.4g}" for v in values) + "]"


# --- result ----------------------------------------------------------------------------------------


def _to_scan(volume: np.ndarray, affine: np.ndarray, ds: Dataset, path: Path, extra: dict) -> MetaTensor:
    check_volume(volume, path, channel_first=False)
    modality = str(ds.get("Modality", "") or "")
    tags = dicom_tags(ds)
    tags.update(extra)
    tags["affine_ras"] = affine.tolist()
    image_type = ds.get("ImageType") or []
    image_type = [image_type] if isinstance(image_type, str) else [str(v) for v in image_type]
    return make_scan(
        volume[None],
        affine,
        synthetic="SYNTHETIC" in image_type,  # how medgen's DICOM writer marks generated voxels
        modality=modality,
        units="HU" if modality == "CT" else "",
        series_description=str(ds.get("SeriesDescription", "") or ""),
        filename_or_obj=str(path),
        format="dicom",
        dicom=tags,
    )


def dicom_tags(ds: Dataset) -> dict[str, Any]:
    """The JSON-able subset of ``ds`` kept in ``meta["dicom"]`` (strings, numbers, lists)."""
    out: dict[str, Any] = {}
    for name in _KEPT_TAGS:
        value = ds.get(name)
        if value is None or value == "":
            continue
        out[name] = _jsonable(value)
    return out


def _jsonable(value: Any) -> Any:
    if isinstance(value, bool):
        return value
    if isinstance(value, int):  # pydicom IS
        return int(value)
    if isinstance(value, float):  # pydicom DS
        return float(value)
    if isinstance(value, (list, tuple, pydicom.multival.MultiValue)):
        return [_jsonable(v) for v in value]
    return str(value)  # str, PersonName, UID
