"""Sanity checks that every reader runs, so bad scans fail early and clearly.

Before any voxel is allocated, a reader compares what the header declares with two limits:

- the **memory budget**: at most :func:`max_voxels` values (voxels times channels), by default
  ``1024³`` ≈ 1.07e9 (4 GiB as float32; reading needs about three times that at its peak). That
  holds a 512 x 512 x 4000 whole-body CT or a 1024³ micro-CT; a 2048³ volume (8.6e9 voxels, 34 GiB as
  float32) is refused. Set the environment variable ``MEDGEN_MAX_VOXELS`` to change it.
- the **data on disk**: :func:`check_data_size` refuses a header that declares more bytes than the
  file holds (uncompressed data), and :func:`decompressed_size` counts what compressed data expands
  to, in 1 MiB pieces, stopping at the declared size. A lying header therefore fails in
  milliseconds and with at most a few MiB, instead of allocating gigabytes first.
"""

from __future__ import annotations

import math
import os
import zlib
from pathlib import Path
from typing import BinaryIO

import numpy as np

from medgen.errors import ConfigError, ScanReadError

DEFAULT_MAX_VOXELS = 1024**3
MAX_SIDE = 8192
_CHUNK = 1 << 20


def max_voxels() -> int:
    """The memory budget of one scan in values (voxels x channels): ``MEDGEN_MAX_VOXELS`` or ``1024³``."""
    text = os.environ.get("MEDGEN_MAX_VOXELS", "").strip()
    if not text:
        return DEFAULT_MAX_VOXELS
    try:
        value = int(float(text))
    except ValueError:
        value = 0
    if value <= 0:
        raise ConfigError(f"environment variable MEDGEN_MAX_VOXELS: '{text}' is not a positive number of voxels")
    return value


def check_shape(shape: tuple[int, ...], path: str | Path) -> None:
    """Refuse a declared size beyond :data:`MAX_SIDE` per axis or the budget :func:`max_voxels`.

    ``shape`` is what the header declares (all axes, channels included); nothing is read.
    """
    sides = tuple(int(s) for s in shape)
    n = math.prod(sides)
    if any(s > MAX_SIDE for s in sides) or any(s < 0 for s in sides):
        raise ScanReadError(path, f"absurd image size {sides}; is the header corrupt?")
    budget = max_voxels()
    if n > budget:
        raise ScanReadError(path, f"header declares {sides} = {n:,} values, over medgen's memory budget of "
                                  f"{budget:,}; is the header corrupt? (set MEDGEN_MAX_VOXELS to read larger scans)")


def check_data_size(path: str | Path, declared: int, available: int, *, compressed: bool = False) -> None:
    """Refuse a file whose voxel data (``available`` bytes) is shorter than the header's ``declared`` bytes."""
    if available < declared:
        held = "its compressed data expands to" if compressed else "the file holds"
        raise ScanReadError(path, f"header declares {declared:,} bytes of voxel data but {held} only "
                                  f"{max(available, 0):,}; the file is truncated or its header is corrupt")


def decompressed_size(stream: BinaryIO, limit: int) -> int:
    """Bytes that the zlib or gzip data left in ``stream`` expand to, counted up to ``limit``.

    Several gzip members count together (as :mod:`gzip` reads them); trailing zero padding ends the
    count. Memory stays at about 1 MiB whatever the data holds; a corrupt stream counts up to the
    corruption.
    """
    total, dec, data = 0, zlib.decompressobj(47), b""  # wbits 47: zlib or gzip header, detected
    while total < limit:
        if not data:
            data = stream.read(_CHUNK)
            if not data:
                break
        if dec.eof:
            if not data.strip(b"\x00"):
                break
            dec = zlib.decompressobj(47)
        try:
            total += len(dec.decompress(data, _CHUNK))
        except zlib.error:
            break
        data = dec.unused_data if dec.eof else dec.unconsumed_tail
    return min(total, limit)


def check_volume(array: np.ndarray, path: str | Path, *, spatial_dims: int = 3, channel_first: bool = True) -> None:
    """Raise :class:`ScanReadError` naming ``path`` if ``array`` is not a usable volume.

    Checks: spatial rank (a 2D image where 3D is needed), empty or absurd sizes, NaN/Inf voxels.
    ``array`` is ``(C, X, Y, Z)`` when ``channel_first`` else ``(X, Y, Z)``.
    """
    spatial = array.shape[1:] if channel_first else array.shape
    if len(spatial) != spatial_dims:
        raise ScanReadError(path, f"expected a {spatial_dims}D image, got shape {tuple(spatial)}")
    if spatial_dims == 3 and min(spatial) <= 1:
        raise ScanReadError(path, f"expected a 3D volume, got a single slice of shape {tuple(spatial)}")
    if array.size == 0:
        raise ScanReadError(path, "image has no voxels")
    if max(spatial) > MAX_SIDE or array.size > max_voxels():
        raise ScanReadError(path, f"absurd image size {tuple(array.shape)}; is the header corrupt?")
    if np.issubdtype(array.dtype, np.floating):
        bad = ~np.isfinite(array)
        if bad.any():
            raise ScanReadError(path, f"{int(bad.sum())} voxels are NaN or Inf")
