"""Where an NRRD or MetaImage header says its voxels are, and how many bytes are really there.

SimpleITK allocates (and fills) the whole image a header declares before it finds the data short,
so a 1 kB file whose header claims 2000³ floats costs 32 GB. :func:`stored_bytes` reads the header
text itself and measures the data it points at without reading it into memory:

- NRRD (``.nrrd`` with attached data, ``.nhdr`` with ``data file:``): ``encoding`` raw, gzip, ascii
  or hex; ``line skip`` / ``byte skip``; one data file, a ``LIST`` of files, or a ``printf``-style
  pattern ``name%03d.raw min max step``.
- MetaImage (``.mha`` with ``ElementDataFile = LOCAL``, ``.mhd`` with a data file): raw or
  ``CompressedData = True`` (zlib), ``HeaderSize``, a ``LIST`` of files or a pattern.

Compressed data is counted by decompressing in 1 MiB pieces (:func:`medgen.io.checks.decompressed_size`).

Example:
    >>> stored_bytes(Path("ct.nrrd"), declared=512 * 512 * 300 * 2, itemsize=2)  # doctest: +SKIP
    157286400
"""

from __future__ import annotations

import os
from pathlib import Path

from medgen.errors import ScanReadError
from medgen.io.checks import decompressed_size

_MAX_HEADER = 1 << 20  # header text read at most; real headers are a few kB
_MAX_FILES = 1 << 16  # data files a pattern may name (one per slice at most, in practice)
_NRRD_ENCODINGS = {"raw": "raw", "gzip": "gzip", "gz": "gzip", "ascii": "ascii", "text": "ascii", "txt": "ascii",
                   "hex": "hex"}


def stored_bytes(path: Path, declared: int, itemsize: int) -> tuple[int, bool] | None:
    """Bytes of voxel data that the file(s) behind the header at ``path`` hold, counted up to ``declared``.

    Text encodings are converted to the bytes they can at most decode to (``itemsize`` bytes per value).

    Returns:
        ``(bytes, compressed)``, or None when the header's layout is not one described in the module
        docstring (SimpleITK then reads it unchecked, within the voxel budget).

    Raises:
        ScanReadError: an encoding that SimpleITK cannot read (NRRD bzip2), or a data file that is missing.
    """
    with open(path, "rb") as fh:
        head = fh.read(_MAX_HEADER)
    try:
        if head.startswith(b"NRRD"):
            return _nrrd(path, head, declared, itemsize)
        if b"ElementDataFile" in head:
            return _meta(path, head, declared)
    except (ValueError, TypeError, IndexError, KeyError):  # a field medgen cannot parse: SimpleITK will say
        return None
    return None


def _nrrd(path: Path, head: bytes, declared: int, itemsize: int) -> tuple[int, bool] | None:
    end = head.find(b"\n\n")
    header_end = len(head) if end < 0 else end + 2
    lines = head[:header_end].decode("latin-1").splitlines()
    fields, listed = {}, []
    for i, line in enumerate(lines[1:], start=1):
        if ":=" in line or line.startswith("#") or ": " not in line:
            continue
        key, value = line.split(": ", 1)
        key = key.strip().lower().replace(" ", "")
        fields[key] = value.strip()
        if key == "datafile" and value.split()[:1] == ["LIST"]:  # the last field; file names follow
            listed = [name.strip() for name in lines[i + 1:] if name.strip()]
            break
    raw_encoding = fields.get("encoding", "raw").lower()
    encoding = _NRRD_ENCODINGS.get(raw_encoding)
    if encoding is None:
        raise ScanReadError(path, f"NRRD encoding '{raw_encoding}' is not readable (SimpleITK reads raw, gzip, "
                                  "ascii and hex)")
    line_skip, byte_skip = int(fields.get("lineskip", 0)), int(fields.get("byteskip", 0))
    spec = fields.get("datafile")
    if spec is None:
        if end < 0:
            return None
        files = [(path, header_end)]
    else:
        files = [(f, 0) for f in _data_files(path, spec, listed)]
    return _measure_all(files, line_skip, byte_skip, encoding, declared, itemsize)


def _meta(path: Path, head: bytes, declared: int) -> tuple[int, bool] | None:
    fields, data_start = {}, None
    position = 0
    for line in head.splitlines(keepends=True):
        position += len(line)
        key, _, value = line.decode("latin-1").partition("=")
        fields[key.strip().lower()] = value.strip()
        if key.strip() == "ElementDataFile":
            data_start = position
            break
    if data_start is None:
        return None
    encoding = "gzip" if fields.get("compresseddata", "false").lower() == "true" else "raw"
    skip = int(fields.get("headersize", 0) or 0)
    spec = fields["elementdatafile"]
    if spec == "LOCAL":
        files = [(path, data_start)]
    else:
        listed = head[data_start:].decode("latin-1").split() if spec.split()[0] == "LIST" else []
        files = [(f, 0) for f in _data_files(path, spec, listed)]
    return _measure_all(files, 0, skip, encoding, declared, 1)


def _data_files(header: Path, spec: str, listed: list[str]) -> list[Path]:
    """The data files a ``data file:`` / ``ElementDataFile`` value names, relative to the header's folder."""
    parts = spec.split()
    if parts[0] == "LIST":
        names = listed
    elif len(parts) >= 4 and "%" in parts[0]:
        first, last, step = (int(v) for v in parts[1:4])
        numbers = range(first, last + (1 if step > 0 else -1), step or 1)
        if step == 0 or len(numbers) > _MAX_FILES:
            raise ScanReadError(header, f"data file pattern '{spec}' names {len(numbers)} files; "
                                        "is the header corrupt?")
        names = [parts[0] % i for i in numbers]
    else:
        names = [spec]
    files = [header.parent / name for name in names]
    for f in files:
        if not f.is_file():
            raise ScanReadError(header, f"its data file {f} is missing")
    return files


def _measure_all(files: list[tuple[Path, int]], line_skip: int, byte_skip: int, encoding: str, declared: int,
                 itemsize: int) -> tuple[int, bool]:
    total = 0
    for file, start in files:
        total += _measure(file, start, line_skip, byte_skip, encoding, declared - total, itemsize)
        if total >= declared:
            break
    return min(total, declared), encoding == "gzip"


def _measure(file: Path, start: int, line_skip: int, byte_skip: int, encoding: str, limit: int,
             itemsize: int) -> int:
    """Bytes of voxel data in ``file`` after ``start``, the skips and decoding (up to ``limit``)."""
    with open(file, "rb") as fh:
        fh.seek(start)
        for _ in range(line_skip):
            fh.readline()
        if byte_skip > 0:  # -1: raw data is the end of the file, so all that follows counts
            fh.seek(byte_skip, os.SEEK_CUR)
        if encoding == "gzip":
            return decompressed_size(fh, limit)
        left = max(os.fstat(fh.fileno()).st_size - fh.tell(), 0)
    if encoding == "hex":
        return left // 2
    if encoding == "ascii":  # each value takes a digit and a separator at least
        return (left + 1) // 2 * itemsize
    return left
