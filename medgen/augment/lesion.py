"""Insert a synthetic lesion inside a mask or box, updating the label map and the detection boxes.

Generator: a **procedural lesion model**, not diffusion inpainting (the model zoo has no inpainting
model yet). A lesion is an ellipsoid with radii drawn in ``radius_mm`` (per axis, in mm, so it is
round in the patient whatever the voxel size), its boundary made irregular by a smooth random field
(lobulation), a soft rim (partial volume), and a contrast drawn in ``contrast`` (image units: HU for
CT, e.g. ``(-80, -20)`` for hypodense liver lesions) modulated by a smooth texture. Its centre is
drawn uniformly among the voxels of ``mask_key`` (e.g. an organ or brain mask), else of the label
map's foreground, and the lesion is clipped to that region.

The lesion's voxels get ``lesion_label`` in the label map; its tight box (MONAI ``StandardMode``,
voxel coordinates) is appended to ``box_keys`` with class ``box_class`` appended to ``label_keys``.
Everything is drawn from one seed per call, recorded in the trace with the lesion's centre and size.

>>> aug = RandLesionInsertd("image", "label", mask_key="liver", box_keys="boxes", label_keys="box_labels",
...                         contrast=(-80.0, -20.0), prob=0.5)                         # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from typing import Any

import numpy as np
import torch
from monai.data import MetaTensor
from monai.transforms import InvertibleTransform, MapTransform, RandomizableTransform
from monai.transforms.traits import ThreadUnsafe
from monai.utils import TransformBackends
from scipy import ndimage

from medgen.augment._base import SeedDrawing, like_input, untrace
from medgen.augment._boxes import box_of_mask


def procedural_lesion(
    shape: tuple[int, int, int], centre: np.ndarray, radii_vox: np.ndarray, rng: np.random.Generator,
    irregularity: float = 0.25,
) -> np.ndarray:
    """Lesion weight map ``(X, Y, Z)`` in [0, 1]: 1 inside, a soft rim of ~1 voxel, 0 outside."""
    grid = np.meshgrid(*[np.arange(n, dtype=np.float32) for n in shape], indexing="ij")
    rho = np.sqrt(sum(((g - c) / r) ** 2 for g, c, r in zip(grid, centre, radii_vox)))
    field = ndimage.gaussian_filter(rng.standard_normal(shape).astype(np.float32), float(radii_vox.mean()) / 2)
    field /= max(float(np.abs(field).max()), 1e-6)
    rho = rho * (1.0 + irregularity * field)
    rim = 1.0 / float(radii_vox.mean())  # one voxel of partial volume
    return np.clip((1.0 - rho) / rim + 0.5, 0.0, 1.0)


class RandLesionInsertd(SeedDrawing, MapTransform, InvertibleTransform, ThreadUnsafe):
    """Insert a procedural lesion (see module docstring) into image, label map and boxes.

    Args:
        image_key: image ``(C, X, Y, Z)`` in its units (the lesion is added to every channel).
        label_key: integer label map ``(1, X, Y, Z)`` (optional: ``None`` leaves labels out).
        mask_key: where lesions may go (``> 0``); default: the label map's foreground, else anywhere.
        box_keys, label_keys: one key each (or None): ``(N, 6)`` StandardMode voxel boxes and ``(N,)``
            classes, extended by the new lesion.
        lesion_label: label value of lesion voxels; ``box_class``: its detection class.
        radius_mm: range of the lesion's semi-axes (mm); ``contrast``: range of its intensity offset
            (image units); ``texture``: relative amplitude of its internal texture.
        prob: chance of inserting a lesion.
    """

    backend = [TransformBackends.TORCH]

    def __init__(
        self, image_key: str = "image", label_key: str | None = "label", *, mask_key: str | None = None,
        box_keys: str | None = None, label_keys: str | None = None, lesion_label: int = 1, box_class: int = 1,
        radius_mm: tuple[float, float] = (3.0, 8.0), contrast: tuple[float, float] = (-60.0, -20.0),
        texture: float = 0.2, prob: float = 1.0, allow_missing_keys: bool = False,
    ) -> None:
        keys = [k for k in (image_key, label_key, box_keys) if k is not None]
        MapTransform.__init__(self, keys, allow_missing_keys)
        RandomizableTransform.__init__(self, prob)
        self.image_key, self.label_key, self.mask_key = image_key, label_key, mask_key
        self.box_key, self.box_label_key = box_keys, label_keys
        self.lesion_label, self.box_class = lesion_label, box_class
        self.radius_mm, self.contrast, self.texture = tuple(radius_mm), tuple(contrast), texture
        self.seed = 0

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> dict[Hashable, torch.Tensor]:
        d = dict(data)
        self.randomize()
        if self.image_key not in d:
            if self.allow_missing_keys:
                return d
            raise KeyError(f"RandLesionInsertd: key '{self.image_key}' is not in the data")
        info: dict[str, Any] = {"seed": self.seed, "generator": "procedural"}
        if self._do_transform:
            info.update(self._insert(d))
        for key in self.key_iterator(d):
            if isinstance(d[key], MetaTensor) and self.tracing:
                d[key] = self.push_transform(d[key], extra_info=info)
        return d

    def _insert(self, d: dict) -> dict[str, Any]:
        rng = np.random.default_rng(self.seed)
        image = d[self.image_key]
        shape = tuple(image.shape[1:])
        region = self._region(d, shape)
        candidates = np.argwhere(region)
        if len(candidates) == 0:
            return {"inserted": False}
        centre = candidates[rng.integers(len(candidates))].astype(np.float32)
        spacing = np.linalg.norm(image.affine.numpy()[:3, :3], axis=0) if isinstance(image, MetaTensor) else np.ones(3)
        radii_mm = rng.uniform(*self.radius_mm, size=3)
        weight = procedural_lesion(shape, centre, radii_mm / spacing, rng) * region
        lesion = weight >= 0.5
        if not lesion.any():
            return {"inserted": False}
        contrast = float(rng.uniform(*self.contrast))
        texture = ndimage.gaussian_filter(rng.standard_normal(shape).astype(np.float32), 1.0)
        texture *= self.texture * abs(contrast) / max(float(texture.std()), 1e-6)
        delta = torch.as_tensor(weight * (contrast + texture), dtype=torch.float32)
        img = torch.as_tensor(image)
        d[self.image_key] = like_input(img + delta.to(img.device)[None], image)
        if self.label_key is not None and self.label_key in d:
            lab = torch.as_tensor(d[self.label_key]).clone()
            lab[:, torch.as_tensor(lesion, device=lab.device)] = self.lesion_label
            d[self.label_key] = like_input(lab, d[self.label_key])
        box = box_of_mask(torch.as_tensor(lesion))
        if self.box_key is not None and self.box_key in d:
            boxes = torch.as_tensor(d[self.box_key]).reshape(-1, 6)
            d[self.box_key] = like_input(torch.cat([boxes, box[None].to(boxes)]), d[self.box_key])
            if self.box_label_key is not None:
                old = torch.as_tensor(d.get(self.box_label_key, torch.zeros(0, dtype=torch.long))).reshape(-1)
                new = torch.cat([old, torch.tensor([self.box_class], dtype=old.dtype, device=old.device)])
                d[self.box_label_key] = like_input(new, d[self.box_label_key]) if self.box_label_key in d else new
        return {"inserted": True, "centre": centre.tolist(), "radii_mm": np.round(radii_mm, 2).tolist(),
                "contrast": round(contrast, 2), "box": box.tolist()}

    def _region(self, d: dict, shape: tuple[int, ...]) -> np.ndarray:
        if self.mask_key is not None and self.mask_key in d:
            return torch.as_tensor(d[self.mask_key]).cpu().numpy().reshape(-1, *shape).max(0) > 0
        if self.label_key is not None and self.label_key in d:
            return torch.as_tensor(d[self.label_key]).cpu().numpy()[0] > 0
        return np.ones(shape, dtype=bool)

    def inverse(self, data: Mapping[Hashable, torch.Tensor]) -> dict[Hashable, torch.Tensor]:
        """No spatial change: removes the trace record (a prediction keeps its grid)."""
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = untrace(self, d[key])
        return d
