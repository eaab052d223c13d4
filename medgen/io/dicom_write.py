"""Write a medgen scan as a derived DICOM series: one CT or MR Image Storage file per slice.

Geometry: the RAS affine is turned into LPS (first two rows negated). Array axis 0 runs along the
DICOM row direction (``ImageOrientationPatient[:3]``), axis 1 along the column direction
(``[3:]``), and slice ``k`` sits at ``ImagePositionPatient = affine @ (0, 0, k)``. Oblique and
sheared-through-plane (gantry-tilt-like) affines are stored exactly; an in-plane shear cannot be
expressed in DICOM and is refused. Files are ``IM00001.dcm``, ``IM00002.dcm`` … with
``InstanceNumber`` ``1..Z`` in array order.

Pixel data is 16-bit:

- integer-valued voxels that fit int16 (or uint16) are stored as they are with
  ``RescaleSlope 1 / RescaleIntercept 0``, so they read back exactly;
- other data (fractional values, or a range wider than 16 bits) is quantised with one
  slope/intercept for the whole series onto int16 ``[-32767, 32767]``: the read-back error is at
  most ``slope / 2 = (max - min) / 131068`` (about 0.0008 % of the value range).

Every series is marked as medgen output: ImageType ``DERIVED\\SECONDARY``, a new
SeriesInstanceUID, a SeriesDescription and DerivationDescription from the scan's provenance and,
for synthetic scans (``meta["synthetic"]``), a ``SYNTHETIC`` SeriesDescription prefix, an extra
ImageType value ``SYNTHETIC`` and ImageComments saying the voxels were generated, not acquired.

Example:
    >>> scan = provenance.mark(scan, "denoise", synthetic=False, model="vae-t1")  # doctest: +SKIP
    >>> write_dicom_series(scan, "out/denoised_series")  # doctest: +SKIP
"""

from __future__ import annotations

import datetime as _dt
import hashlib
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import torch
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import (
    PYDICOM_IMPLEMENTATION_UID,
    CTImageStorage,
    ExplicitVRLittleEndian,
    MRImageStorage,
    generate_uid,
)
from pydicom.valuerep import format_number_as_ds

import medgen
from medgen.errors import ScanWriteError
from medgen.intensity import robust_range
from medgen.io.atomic import atomic_path
from medgen.io.meta import affine_of, meta_of
from medgen.io.provenance import summary

RAS_TO_LPS = np.diag([-1.0, -1.0, 1.0, 1.0])
_INT16 = (-32768, 32767)
_UINT16 = (0, 65535)
_COPIED_PATIENT_STUDY = (
    "PatientName", "PatientID", "PatientBirthDate", "PatientSex", "PatientAge", "StudyInstanceUID",
    "StudyDate", "StudyTime", "StudyID", "AccessionNumber", "StudyDescription", "ReferringPhysicianName",
    "BodyPartExamined", "PatientPosition",
)


def write_dicom_series(
    scan: torch.Tensor,
    folder: str | Path,
    *,
    overwrite: bool = False,
    inputs: Iterable[str | Path] = (),
    series_description: str | None = None,
    dtype: str | None = None,
) -> Path:
    """Write ``scan`` as a derived DICOM series in ``folder`` (created atomically).

    Args:
        scan: ``(1, X, Y, Z)`` or ``(X, Y, Z)`` MetaTensor with a voxel-to-RAS affine (mm); values in
            real-world units (HU for CT). ``meta["modality"] == "CT"`` writes CT Image Storage,
            anything else MR Image Storage. ``meta["dicom"]`` (from :func:`read_dicom`) supplies
            patient, study and FrameOfReference tags and the source instances to reference.
        folder: output folder; must not exist unless ``overwrite``; must not be one of ``inputs``.
        series_description: overrides the description built from the provenance (max 64 chars).
        dtype: ``"int16"``, ``"uint16"`` or ``None`` (choose: int16 unless unsigned data needs uint16).

    Returns:
        The folder written.

    Raises:
        ScanWriteError: several channels, NaN/Inf voxels, an in-plane sheared affine, bad ``dtype``,
            existing output.
    """
    folder = Path(folder)
    volume, affine = _volume_and_affine(scan, folder)
    meta = meta_of(scan)
    source = dict(meta.get("dicom") or {})
    stored, slope, intercept, signed = _quantise(volume, dtype, folder)
    lps = RAS_TO_LPS @ affine
    row_step, col_step, slice_step = lps[:3, 0], lps[:3, 1], lps[:3, 2]
    row_cos, col_cos = row_step / np.linalg.norm(row_step), col_step / np.linalg.norm(col_step)
    normal = np.cross(row_cos, col_cos)
    slice_spacing = abs(float(slice_step @ normal))

    series = _series_dataset(meta, source, series_description)
    series.ImageOrientationPatient = [_ds(v) for v in (*row_cos, *col_cos)]
    series.PixelSpacing = [_ds(np.linalg.norm(col_step)), _ds(np.linalg.norm(row_step))]
    series.SliceThickness = _ds(slice_spacing)
    series.SpacingBetweenSlices = _ds(slice_spacing)
    series.Rows, series.Columns = int(volume.shape[1]), int(volume.shape[0])
    series.PixelRepresentation = 1 if signed else 0
    series.RescaleSlope, series.RescaleIntercept = slope, intercept
    if series.Modality == "CT":
        series.RescaleType = "HU"
    lo, hi = robust_range(volume)
    series.WindowCenter, series.WindowWidth = _ds((lo + hi) / 2), _ds(max(hi - lo, 1e-3))
    references = _source_references(source, affine, volume.shape[2])

    pixel_dtype = np.dtype("<i2" if signed else "<u2")
    with atomic_path(folder, overwrite=overwrite, inputs=inputs, is_dir=True) as tmp:
        for k in range(volume.shape[2]):
            ds = _copy(series)
            ds.SOPInstanceUID = generate_uid()
            ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
            ds.InstanceNumber = k + 1
            position = (lps @ np.array([0.0, 0.0, k, 1.0]))[:3]
            ds.ImagePositionPatient = [_ds(v) for v in position]
            ds.SliceLocation = _ds(position @ normal)
            if references is not None:
                ds.SourceImageSequence = _reference_sequence(references[k])
            ds.PixelData = np.ascontiguousarray(stored[:, :, k].T, dtype=pixel_dtype).tobytes()
            ds.save_as(tmp / f"IM{k + 1:05d}.dcm", enforce_file_format=True)
    return folder


def _volume_and_affine(scan: torch.Tensor, folder: Path) -> tuple[np.ndarray, np.ndarray]:
    array = scan.detach().cpu().numpy() if isinstance(scan, torch.Tensor) else np.asarray(scan)
    if array.ndim == 4:
        if array.shape[0] != 1:
            raise ScanWriteError(folder, f"a DICOM series holds one channel; got {array.shape[0]} "
                                         f"(shape {tuple(array.shape)})")
        array = array[0]
    if array.ndim != 3:
        raise ScanWriteError(folder, f"expected a (1, X, Y, Z) volume, got shape {tuple(array.shape)}")
    if max(array.shape[:2]) > 65535:
        raise ScanWriteError(folder, f"slice size {array.shape[:2]} exceeds DICOM's 65535 rows/columns")
    volume = array.astype(np.float64)
    if not np.isfinite(volume).all():
        raise ScanWriteError(folder, "volume contains NaN or Inf voxels; DICOM cannot store them")
    affine = affine_of(scan)
    a, b = affine[:3, 0], affine[:3, 1]
    if np.linalg.norm(a) == 0 or np.linalg.norm(b) == 0 or np.linalg.norm(affine[:3, 2]) == 0:
        raise ScanWriteError(folder, "affine has a zero-length voxel axis")
    if abs(a @ b) / (np.linalg.norm(a) * np.linalg.norm(b)) > 1e-6:
        raise ScanWriteError(folder, "affine's first two axes are not perpendicular; DICOM cannot store an "
                                     "in-plane shear (resample the scan first)")
    n = np.cross(a, b)
    if abs(affine[:3, 2] @ n) < 1e-6 * np.linalg.norm(n) * np.linalg.norm(affine[:3, 2]):
        raise ScanWriteError(folder, "affine's slice axis lies in the image plane; not a volume")
    return volume, affine


def _quantise(volume: np.ndarray, dtype: str | None, folder: Path) -> tuple[np.ndarray, str, str, bool]:
    """Stored 16-bit values and the (slope, intercept) DS strings that map them back.

    Returns:
        ``(stored, slope, intercept, signed)``; ``stored * slope + intercept`` equals ``volume``
        exactly for integer data in range, else within ``slope / 2``.
    """
    if dtype not in (None, "int16", "uint16"):
        raise ScanWriteError(folder, f"dtype {dtype!r} not supported for DICOM; use 'int16' or 'uint16'")
    lo, hi = float(volume.min()), float(volume.max())
    integer = bool(np.all(volume == np.round(volume)))
    signed = dtype == "int16" or (dtype is None and (lo < 0 or hi <= _INT16[1]))
    limits = _INT16 if signed else _UINT16
    if integer and limits[0] <= lo and hi <= limits[1]:
        return volume.astype(np.int32), "1", "0", signed
    # One linear map for the series; symmetric range keeps 0 representable when it is in range.
    lo_q, hi_q = (-32767, 32767) if signed else (0, 65535)
    slope_f = (hi - lo) / (hi_q - lo_q) if hi > lo else 1.0
    slope = format_number_as_ds(slope_f)
    intercept = format_number_as_ds(lo - lo_q * float(slope))
    stored = np.clip(np.round((volume - float(intercept)) / float(slope)), *limits)
    return stored.astype(np.int32), slope, intercept, signed


def _series_dataset(meta: dict, source: dict, description: str | None) -> Dataset:
    """Everything shared by the slices of the new series (no per-slice tags, no pixel data)."""
    modality = "CT" if str(meta.get("modality") or source.get("Modality") or "").upper() == "CT" else "MR"
    synthetic = bool(meta.get("synthetic"))
    now = _dt.datetime.now()
    date, time = now.strftime("%Y%m%d"), now.strftime("%H%M%S")

    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = CTImageStorage if modality == "CT" else MRImageStorage
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    ds.file_meta.ImplementationVersionName = f"MEDGEN_{medgen.__version__}"[:16]
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID
    ds.InstanceCreationDate, ds.InstanceCreationTime = date, time

    study_uid = source.get("StudyInstanceUID") or generate_uid()
    ds.PatientName = source.get("PatientName", "ANONYMOUS^MEDGEN")
    ds.PatientID = source.get("PatientID", "MEDGEN-" + hashlib.sha1(study_uid.encode()).hexdigest()[:10])
    ds.PatientBirthDate = source.get("PatientBirthDate", "")
    ds.PatientSex = source.get("PatientSex", "")
    ds.StudyInstanceUID = study_uid
    ds.StudyDate = source.get("StudyDate", date)
    ds.StudyTime = source.get("StudyTime", time)
    ds.StudyID = source.get("StudyID", "")
    ds.AccessionNumber = source.get("AccessionNumber", "")
    ds.ReferringPhysicianName = source.get("ReferringPhysicianName", "")
    for name in ("PatientAge", "StudyDescription", "BodyPartExamined"):
        if source.get(name):
            setattr(ds, name, source[name])
    ds.PatientPosition = source.get("PatientPosition", "")

    ds.Modality = modality
    ds.SeriesInstanceUID = generate_uid()
    ds.SeriesNumber = 1000 + int(source.get("SeriesNumber") or 0)
    ds.SeriesDate, ds.SeriesTime = date, time
    ds.ContentDate, ds.ContentTime = date, time
    ds.SeriesDescription = _series_description(meta, description)
    ds.FrameOfReferenceUID = source.get("FrameOfReferenceUID") or generate_uid()
    ds.PositionReferenceIndicator = ""
    ds.Manufacturer = "medgen"
    ds.SoftwareVersions = f"medgen {medgen.__version__}"

    ds.ImageType = ["DERIVED", "SECONDARY", "AXIAL" if modality == "CT" else "OTHER"]
    if synthetic:
        ds.ImageType.append("SYNTHETIC")
    ds.DerivationDescription = _derivation_description(meta)[:1024]
    ds.BurnedInAnnotation = "NO"
    ds.ImageComments = (
        "medgen synthetic image: voxels generated by a model, not acquired from the patient; "
        "not for diagnosis. " if synthetic else "medgen derived image. "
    ) + (summary(meta) or "")
    ds.AcquisitionNumber = ""
    if modality == "CT":
        ds.KVP = source.get("KVP", "")
    else:
        ds.ScanningSequence = source.get("ScanningSequence") or "RM"  # RM: research mode
        ds.SequenceVariant = source.get("SequenceVariant") or "NONE"
        ds.ScanOptions = ""
        ds.MRAcquisitionType = ""
        ds.EchoTime = source.get("EchoTime", "")
        ds.RepetitionTime = source.get("RepetitionTime", "")
        ds.EchoTrainLength = ""

    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = ds.BitsStored = 16
    ds.HighBit = 15
    return ds


def _series_description(meta: dict, description: str | None) -> str:
    text = description or summary(meta) or ("medgen DERIVED " + str(meta.get("series_description") or "")).strip()
    if meta.get("synthetic") and not text.upper().startswith("SYNTHETIC"):
        text = "SYNTHETIC " + text.replace("medgen SYNTHETIC ", "medgen ", 1)
    return text[:64]  # LO


def _derivation_description(meta: dict) -> str:
    steps = []
    for rec in meta.get("provenance") or []:
        extras = ", ".join(f"{k}={v}" for k, v in rec.items() if k not in ("operation", "time") and v is not None)
        steps.append(f"{rec.get('operation', '?')} ({extras})" if extras else str(rec.get("operation", "?")))
    head = "SYNTHETIC: generated by medgen, not acquired" if meta.get("synthetic") else "derived by medgen"
    return f"{head}: " + ("; ".join(steps) if steps else "written by medgen")


def _source_references(source: dict, affine: np.ndarray, n_slices: int) -> list[list[tuple[str, str]]] | None:
    """Per output slice, the source (SOPClassUID, SOPInstanceUID) pairs it derives from.

    When the geometry is the source's own (same affine and slice count) slice ``k`` references
    source slice ``k``; otherwise every slice references the whole source series.
    """
    uids = source.get("SOPInstanceUIDs") or []
    if not uids:
        return None
    sop_class = source.get("SOPClassUID", "")
    pairs = [(sop_class, uid) for uid in uids]
    src_affine = source.get("affine_ras")
    if (
        len(uids) == n_slices
        and src_affine is not None
        and np.allclose(np.asarray(src_affine, dtype=np.float64), affine, atol=1e-4)
    ):
        return [[pair] for pair in pairs]
    return [pairs] * n_slices


def _reference_sequence(pairs: list[tuple[str, str]]) -> Sequence:
    items = []
    for sop_class, uid in pairs:
        item = Dataset()
        item.ReferencedSOPClassUID = sop_class
        item.ReferencedSOPInstanceUID = uid
        items.append(item)
    return Sequence(items)


def _copy(template: Dataset) -> Dataset:
    ds = Dataset()
    ds.update(template)
    ds.file_meta = FileMetaDataset()
    ds.file_meta.update(template.file_meta)
    return ds


def _ds(value: float) -> str:
    """A DS string (at most 16 characters) as close to ``value`` as DICOM allows."""
    return format_number_as_ds(float(value) + 0.0)

