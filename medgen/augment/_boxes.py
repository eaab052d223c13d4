"""Boxes through non-rigid transforms: box → mask → transform → box, with MONAI's box utilities.

Boxes are MONAI detection boxes ``(N, 6)`` in :class:`~monai.data.box_utils.StandardMode`
(``xmin, ymin, zmin, xmax, ymax, zmax``) in voxel coordinates of their reference image, as after
``monai.apps.detection.transforms.dictionary.AffineBoxToImageCoordinated``. Each box is drawn as its
own mask channel (an ellipsoid by default, which stays tight under rotation-like motion, as MONAI's
``BoxToMaskd`` recommends), the masks move with the image, and the boxes are read back from them.
A box whose mask leaves the volume is dropped, together with its class label.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from monai.apps.detection.transforms.box_ops import convert_box_to_mask, convert_mask_to_box
from monai.data.box_utils import clip_boxes_to_image


def move_boxes(
    boxes: torch.Tensor | np.ndarray,
    spatial_size: tuple[int, int, int],
    move_mask: Callable[[torch.Tensor], torch.Tensor],
    *,
    ellipse_mask: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Boxes ``(N, 6)`` moved by ``move_mask`` (a nearest-neighbour transform of ``(N, X, Y, Z)`` masks).

    Returns:
        ``(boxes, kept)``: the moved boxes ``(M, 6)`` float32 and the indices ``(M,)`` of the input
        boxes that survived, so class labels can follow with ``labels[kept]``.
    """
    b = torch.as_tensor(boxes, dtype=torch.float32).reshape(-1, 6).cpu()
    if b.shape[0] == 0:
        return b, torch.zeros(0, dtype=torch.long)
    clipped, keep = clip_boxes_to_image(b, spatial_size, remove_empty=True)
    index = torch.arange(b.shape[0])[keep]
    if index.numel() == 0:
        return torch.zeros((0, 6)), index
    # channel i holds box i as value i + 1 on a 0 background, so zero padding stays background
    masks = convert_box_to_mask(clipped, index + 1, spatial_size, bg_label=0, ellipse_mask=ellipse_mask)
    moved = move_mask(torch.as_tensor(masks, dtype=torch.float32)).round().to(torch.int16)
    out, ids = convert_mask_to_box(moved, bg_label=0, box_dtype=torch.float32, label_dtype=torch.long)
    return torch.as_tensor(out).reshape(-1, 6), torch.as_tensor(ids) - 1


def box_of_mask(mask: torch.Tensor) -> torch.Tensor:
    """The tight StandardMode box ``(6,)`` of a non-empty ``(X, Y, Z)`` mask (voxel edges, max exclusive)."""
    idx = torch.nonzero(torch.as_tensor(mask) > 0)
    return torch.cat([idx.min(0).values, idx.max(0).values + 1]).float()
