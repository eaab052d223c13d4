"""Scan I/O that loses nothing: NIfTI, DICOM series and multi-frame, NRRD/MHA/MHD.

>>> from medgen.io import load_scan, save_scan
>>> scan = load_scan("t1.nii.gz")          # MetaTensor (C, X, Y, Z), RAS affine  # doctest: +SKIP
>>> save_scan(scan, "t1.nrrd")                                                   # doctest: +SKIP
"""

from medgen.io.info import scan_info
from medgen.io.load import load_scan
from medgen.io.meta import like, make_scan
from medgen.io.provenance import mark
from medgen.io.save import check_save, save_scan

__all__ = ["load_scan", "save_scan", "check_save", "scan_info", "make_scan", "like", "mark"]
