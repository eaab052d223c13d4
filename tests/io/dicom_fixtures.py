"""Build small synthetic DICOM inputs with plain pydicom, independent of medgen's DICOM writer.

Geometry is given as a 4x4 voxel-to-LPS affine whose columns are ``row_cos * column_spacing``,
``col_cos * row_spacing`` and the slice step, so tests know the exact expected RAS affine.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import nibabel as nib
import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence as DicomSequence
from pydicom.uid import (
    CTImageStorage,
    EnhancedMRImageStorage,
    ExplicitVRLittleEndian,
    MRImageStorage,
    generate_uid,
)
from pydicom.valuerep import format_number_as_ds

LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


def rotation(axis: str, degrees: float) -> np.ndarray:
    """3x3 rotation about the world ``"x"``, ``"y"`` or ``"z"`` axis."""
    c, s = np.cos(np.radians(degrees)), np.sin(np.radians(degrees))
    i, j = {"x": (1, 2), "y": (2, 0), "z": (0, 1)}[axis]
    r = np.eye(3)
    r[i, i], r[i, j], r[j, i], r[j, j] = c, -s, s, c
    return r


def lps_affine(rot: np.ndarray, spacing: Sequence[float], origin: Sequence[float]) -> np.ndarray:
    """Voxel-to-LPS affine with orthonormal directions ``rot`` (columns) and voxel ``spacing`` mm."""
    a = np.eye(4)
    a[:3, :3] = np.asarray(rot) * np.asarray(spacing, dtype=float)
    a[:3, 3] = origin
    return a


def _ds(v: float) -> str:
    return format_number_as_ds(float(v) + 0.0)


def _base(modality: str, sop_class: str, series_uid: str, description: str) -> Dataset:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = sop_class
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = sop_class
    ds.PatientName = "Test^Patient"
    ds.PatientID = "P0001"
    ds.PatientBirthDate = "19700101"
    ds.PatientSex = "F"
    ds.StudyInstanceUID = "1.2.826.0.1.3680043.8.498.1"
    ds.StudyDate, ds.StudyTime, ds.StudyID = "20240102", "101010", "S1"
    ds.AccessionNumber = "ACC42"
    ds.StudyDescription = "Head"
    ds.FrameOfReferenceUID = "1.2.826.0.1.3680043.8.498.2"
    ds.Modality = modality
    ds.SeriesInstanceUID = series_uid
    ds.SeriesNumber = 3
    ds.SeriesDescription = description
    ds.Manufacturer = "TestVendor"
    ds.BodyPartExamined = "HEAD"
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 1
    return ds


def write_classic_series(
    folder: Path,
    stored: np.ndarray,
    lps: np.ndarray,
    *,
    modality: str = "CT",
    slopes: Sequence[float] | None = None,
    intercepts: Sequence[float] | None = None,
    file_names: Sequence[str] | None = None,
    instance_numbers: Sequence[int] | None = None,
    series_uid: str | None = None,
    description: str = "test series",
    skip: Sequence[int] = (),
    transfer_syntax: str | None = None,
) -> list[Path]:
    """One file per slice of ``stored`` ``(X, Y, Z)`` int16, slice ``k`` at ``lps @ (0, 0, k)``.

    Returns:
        the paths written, in slice order (``None``-free; skipped slices are left out).
    """
    folder.mkdir(parents=True, exist_ok=True)
    nz = stored.shape[2]
    series_uid = series_uid or generate_uid()
    row, col = lps[:3, 0], lps[:3, 1]
    sop_class = CTImageStorage if modality == "CT" else MRImageStorage
    paths = []
    for k in range(nz):
        if k in skip:
            continue
        ds = _base(modality, sop_class, series_uid, description)
        ds.SOPInstanceUID = generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.InstanceNumber = int(instance_numbers[k]) if instance_numbers is not None else k + 1
        ds.ImagePositionPatient = [_ds(v) for v in (lps @ [0, 0, k, 1])[:3]]
        ds.ImageOrientationPatient = [_ds(v) for v in (*row / np.linalg.norm(row), *col / np.linalg.norm(col))]
        ds.PixelSpacing = [_ds(np.linalg.norm(col)), _ds(np.linalg.norm(row))]
        ds.SliceThickness = _ds(np.linalg.norm(lps[:3, 2]))
        ds.Rows, ds.Columns = stored.shape[1], stored.shape[0]
        ds.RescaleSlope = _ds(slopes[k] if slopes is not None else 1)
        ds.RescaleIntercept = _ds(intercepts[k] if intercepts is not None else 0)
        ds.PixelData = np.ascontiguousarray(stored[:, :, k].T.astype("<i2")).tobytes()
        if transfer_syntax is not None:
            ds.compress(transfer_syntax, generate_instance_uid=False)
        name = file_names[k] if file_names is not None else f"slice{k:03d}.dcm"
        path = folder / name
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


def write_enhanced_mr(
    path: Path,
    stored: np.ndarray,
    lps: np.ndarray,
    *,
    frame_order: Sequence[int],
    slopes: Sequence[float],
    intercepts: Sequence[float],
    declared_spacing: float | None = None,
) -> Path:
    """An Enhanced MR Image Storage file whose frame ``f`` holds slice ``frame_order[f]``.

    Orientation and pixel measures go in the shared functional groups; position and rescale
    (PixelValueTransformationSequence) per frame.
    """
    ds = _base("MR", EnhancedMRImageStorage, generate_uid(), "enhanced test")
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.InstanceNumber = 1
    ds.NumberOfFrames = len(frame_order)
    ds.Rows, ds.Columns = stored.shape[1], stored.shape[0]
    row, col = lps[:3, 0], lps[:3, 1]

    shared = Dataset()
    measures = Dataset()
    measures.PixelSpacing = [_ds(np.linalg.norm(col)), _ds(np.linalg.norm(row))]
    measures.SliceThickness = _ds(np.linalg.norm(lps[:3, 2]))
    measures.SpacingBetweenSlices = _ds(declared_spacing or np.linalg.norm(lps[:3, 2]))
    shared.PixelMeasuresSequence = DicomSequence([measures])
    orientation = Dataset()
    orientation.ImageOrientationPatient = [
        _ds(v) for v in (*row / np.linalg.norm(row), *col / np.linalg.norm(col))
    ]
    shared.PlaneOrientationSequence = DicomSequence([orientation])
    ds.SharedFunctionalGroupsSequence = DicomSequence([shared])

    frames = []
    for k in frame_order:
        group = Dataset()
        position = Dataset()
        position.ImagePositionPatient = [_ds(v) for v in (lps @ [0, 0, k, 1])[:3]]
        group.PlanePositionSequence = DicomSequence([position])
        transform = Dataset()
        transform.RescaleSlope = _ds(slopes[k])
        transform.RescaleIntercept = _ds(intercepts[k])
        transform.RescaleType = "US"
        group.PixelValueTransformationSequence = DicomSequence([transform])
        content = Dataset()
        content.InStackPositionNumber = int(k) + 1
        group.FrameContentSequence = DicomSequence([content])
        frames.append(group)
    ds.PerFrameFunctionalGroupsSequence = DicomSequence(frames)
    pixels = np.stack([stored[:, :, k].T for k in frame_order]).astype("<i2")
    ds.PixelData = np.ascontiguousarray(pixels).tobytes()
    ds.save_as(path, enforce_file_format=True)
    return path


def write_structured_report(path: Path, series_uid: str | None = None) -> Path:
    """A non-image DICOM object (Basic Text SR header only): no pixels, no geometry."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.88.11"
    ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID
    ds.Modality = "SR"
    ds.SeriesInstanceUID = series_uid or generate_uid()
    ds.save_as(path, enforce_file_format=True)
    return path


def mni_block(shape: tuple[int, int, int] = (24, 20, 16), step: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """A small central block of nilearn's MNI152 T1 (uint8 values 0..255 as float), and its RAS affine."""
    import nilearn

    path = os.path.join(os.path.dirname(nilearn.__file__), "datasets", "data",
                        "mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz")
    img = nib.load(path)
    data = np.asarray(img.dataobj)
    centre = np.array(data.shape) // 2
    start = centre - np.array(shape) * step // 2
    block = data[tuple(slice(s, s + n * step, step) for s, n in zip(start, shape))].astype(np.float32)
    affine = img.affine @ np.diag([step, step, step, 1.0])
    affine[:3, 3] = (img.affine @ np.append(start, 1.0))[:3]
    return block, affine
