"""The one real brain medgen ships: the MNI152 2009 (ICBM 152 nonlinear symmetric 2009a) template.

The T1 image and the grey- and white-matter probability maps are read from the files the ``nilearn``
package installs (``nilearn/datasets/data``; 197 x 233 x 189 voxels, 1 mm, uint8 0-255); nothing is
downloaded. nilearn ships no CSF map, so CSF is derived:

- brain mask = voxels where the (skull-stripped) T1 is non-zero;
- ``p_csf = clip(mask - p_gm - p_wm, 0, 1)``: whatever is inside the brain but is neither grey nor
  white matter (ventricles, sulcal and cisternal CSF; these voxels are dark on the T1, ~70/255
  against ~165 for GM and ~220 for WM, which is what CSF looks like on a T1);
- ``p_background = 1 - p_csf - p_gm - p_wm``.

The tissue label map is the arg-max of the four probabilities: 0 background, 1 CSF, 2 GM, 3 WM.

Coarser resolutions (2 mm, 3 mm) average blocks of 2³ / 3³ voxels (the volume is zero-padded at the
far end to a multiple of the block) -- the partial-volume-correct way to downsample probability
maps -- and place each coarse voxel at the centre of its block, so world coordinates stay exact:
``affine_r = affine_1mm @ [[r,0,0,(r-1)/2],[0,r,0,(r-1)/2],[0,0,r,(r-1)/2],[0,0,0,1]]``. Labels are
the arg-max of the averaged probabilities.

>>> t = mni152(3)                                     # doctest: +SKIP
>>> t["image"].shape, t["label"].unique()             # doctest: +SKIP
(torch.Size([1, 66, 78, 63]), tensor([0, 1, 2, 3], dtype=torch.uint8))
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from monai.data import MetaTensor

from medgen.errors import DataError
from medgen.io import load_scan, make_scan

TISSUES = ("background", "csf", "gm", "wm")  # label value = index
RESOLUTIONS = (1, 2, 3)
_FILES = {
    "t1": "mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz",
    "gm": "mni_icbm152_gm_tal_nlin_sym_09a_converted.nii.gz",
    "wm": "mni_icbm152_wm_tal_nlin_sym_09a_converted.nii.gz",
}


def mni152_files() -> dict[str, Path]:
    """Paths of the MNI152 2009 T1, GM and WM files installed with nilearn: ``{"t1", "gm", "wm"}``.

    Raises:
        DataError: if nilearn or one of its files is missing.
    """
    try:
        import nilearn
    except ImportError:
        raise DataError("built-in MNI152 data needs the 'nilearn' package (pip install nilearn)") from None
    folder = Path(os.path.dirname(nilearn.__file__)) / "datasets" / "data"
    files = {key: folder / name for key, name in _FILES.items()}
    for path in files.values():
        if not path.is_file():
            raise DataError(f"{path}: MNI152 template file missing from the nilearn install; reinstall nilearn")
    return files


def mni152(resolution: int = 1) -> dict[str, MetaTensor]:
    """The MNI152 2009 template at ``resolution`` mm (1, 2 or 3), with tissue maps and labels.

    Returns:
        ``{"image", "label", "csf", "gm", "wm"}``, each a MetaTensor ``(1, X, Y, Z)`` with the same
        RAS affine (1 mm: ``197 x 233 x 189``; 2 mm: ``99 x 117 x 95``; 3 mm: ``66 x 78 x 63``):

        - ``image``: T1, float32, the template's 0-255 scale (brain only, skull-stripped);
        - ``label``: uint8 tissue labels 0 background, 1 CSF, 2 GM, 3 WM;
        - ``csf``, ``gm``, ``wm``: float32 tissue probabilities in [0, 1].

        The arrays are cached in-process; the returned tensors are fresh copies.
    """
    cached = _template(resolution)
    return {key: value.clone() for key, value in cached.items()}


@functools.lru_cache(maxsize=len(RESOLUTIONS))
def _template(resolution: int) -> dict[str, MetaTensor]:
    if resolution not in RESOLUTIONS:
        raise DataError(f"MNI152 resolution must be one of {RESOLUTIONS} mm, got {resolution!r}")
    stack, affine = _source()
    if resolution > 1:
        stack, affine = block_average(stack, affine, resolution)
    probs = stack[1:]
    background = (1.0 - probs.sum(0, keepdim=True)).clamp(min=0.0)
    label = torch.cat([background, probs]).argmax(0, keepdim=True).to(torch.uint8)
    meta = {"modality": "MR", "series_description": f"MNI152 2009a T1 template, {resolution} mm"}
    out = {
        "image": make_scan(stack[:1], affine, **meta),
        "label": make_scan(label, affine, dtype=torch.uint8, **meta),
    }
    for n, name in enumerate(("csf", "gm", "wm")):
        out[name] = make_scan(probs[n : n + 1], affine, **meta)
    return out


@functools.lru_cache(maxsize=1)
def _source() -> tuple[torch.Tensor, np.ndarray]:
    """The 1 mm T1 and CSF/GM/WM probabilities stacked ``(4, X, Y, Z)``, and their affine."""
    files = mni152_files()
    t1 = load_scan(files["t1"])
    affine = t1.affine.numpy()
    t1 = t1.as_tensor()
    gm = load_scan(files["gm"]).as_tensor() / 255.0
    wm = load_scan(files["wm"]).as_tensor() / 255.0
    mask = (t1 > 0).float()
    scale = (gm + wm).clamp(min=1.0)  # a few voxels have p_gm + p_wm slightly above 1 (uint8 rounding)
    gm, wm = gm * mask / scale, wm * mask / scale
    csf = (mask - gm - wm).clamp(0.0, 1.0)
    return torch.cat([t1, csf, gm, wm]), affine


def block_average(volume: torch.Tensor, affine: np.ndarray, factor: int) -> tuple[torch.Tensor, np.ndarray]:
    """Average ``factor``³ blocks of ``volume`` ``(C, X, Y, Z)``; return it with its centred affine.

    The volume is zero-padded at the high end of each axis to a multiple of ``factor``.
    """
    pad = [(-s) % factor for s in volume.shape[1:]]
    padded = F.pad(volume[None], (0, pad[2], 0, pad[1], 0, pad[0]))
    out = F.avg_pool3d(padded, kernel_size=factor)[0]
    step = np.eye(4)
    step[:3, :3] *= factor
    step[:3, 3] = (factor - 1) / 2.0
    return out, np.asarray(affine, dtype=np.float64) @ step
