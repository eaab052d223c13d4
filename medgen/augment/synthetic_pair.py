"""New image/label pairs: a real label map, deformed by the cohort deformation, rendered by a label-conditioned GAN.

1. The case's label map is deformed by a random smooth diffeomorphism (the one the built-in cohort
   simulator uses, :func:`medgen.augment.deform.random_displacement`; nearest neighbour, so labels
   stay integers): new, plausible anatomy.
2. The zoo's label-conditioned generator renders an image from the one-hot deformed labels: the
   SPADE GAN (family ``gan``, ``gan.label_classes > 0``) in one forward pass (the fast path), or a
   diffusion model with a MONAI ControlNet (family ``diffusion``, ``diffusion.label_classes > 0``)
   with its default sampler (slower, for pools).

Every synthetic image therefore has an exact label: the one it was generated from. The image is
returned in the model's data units on the label's grid (affine, shape), marked ``synthetic``.
The spatial part is invertible (``Invertd`` warps back with the inverse field).

:func:`synthetic_pairs` renders a list of label maps into pairs at once (pools, TSTR benchmarks).

>>> aug = RandSyntheticPaird("image", "label", model="runs/spade/model", prob=0.3)   # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from monai.data import MetaTensor
from monai.transforms import InvertibleTransform, MapTransform, RandomizableTransform, ResampleToMatch, Spacing
from monai.transforms.traits import ThreadUnsafe
from monai.utils import TransformBackends

from medgen.augment._base import SeedDrawing, like_input
from medgen.augment._generative import check_compatible, from_model_space, one_hot_labels
from medgen.augment._lazy_model import LazyModel
from medgen.augment.deform import RandDeformd, invert_displacement, random_displacement, spacing_of, warp_volume
from medgen.errors import ConfigError, DataError
from medgen.io.meta import affine_of, like, spacing_from_affine
from medgen.synthesize.generate import render_labels


class RandSyntheticPaird(SeedDrawing, MapTransform, InvertibleTransform, ThreadUnsafe):
    """Replace ``(image, label)`` by a synthetic pair from the deformed label (see module docstring).

    Args:
        image_key, label_key: the image ``(C, X, Y, Z)`` and its integer label map ``(1, X, Y, Z)``.
        model: path of a label-conditioned GAN or diffusion model folder (``label_classes`` classes).
        strength: deformation strength (0 keeps the label as is, 1 cohort-like variation).
        prob: chance of replacing the pair.
        device: ``"auto"``, ``"cpu"``, ``"cuda"``...
        allow_missing_keys: leave the case alone when a key is absent.
    """

    backend = [TransformBackends.TORCH]

    def __init__(self, image_key: str = "image", label_key: str = "label", *, model: str | Path,
                 strength: float = 0.5, prob: float = 1.0, device: str = "auto",
                 allow_missing_keys: bool = False) -> None:
        MapTransform.__init__(self, [image_key, label_key], allow_missing_keys)
        RandomizableTransform.__init__(self, prob)
        self.image_key, self.label_key = image_key, label_key
        self.model, self.strength = LazyModel(model, device), strength
        self.seed = 0

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> dict[Hashable, torch.Tensor]:
        d = dict(data)
        self.randomize()
        if self.image_key not in d or self.label_key not in d:
            if self.allow_missing_keys:
                return d
            raise KeyError(f"RandSyntheticPaird: needs keys '{self.image_key}' and '{self.label_key}'")
        label = d[self.label_key]
        info: dict[str, Any] = {"seed": self.seed, "strength": self.strength, "spacing_mm": spacing_of(label)}
        if self._do_transform:
            model = self.model.get()
            classes = model.config.label_classes
            if not classes:
                raise ConfigError(f"model '{model.name}': RandSyntheticPaird needs a label-conditioned GAN or "
                                  "diffusion model (gan.label_classes or diffusion.label_classes > 0)")
            check_compatible(model, label, "label map")
            top = int(torch.as_tensor(label).max())
            if top >= classes or int(torch.as_tensor(label).min()) < 0:
                raise DataError(f"model '{model.name}' knows label classes 0-{classes - 1}; this label map has "
                                f"class {top if top >= classes else int(torch.as_tensor(label).min())}")
            u = random_displacement(self.seed, label.shape[1:], info["spacing_mm"], self.strength)
            label = warp_volume(label, u, "nearest", "zeros")
            y = render_labels(model, one_hot_labels(label, classes, model.config.size), self.seed)
            image = from_model_space(model, y, tuple(label.shape[1:]))
            image = like_input(image.to(torch.as_tensor(d[self.image_key]).device), d[self.image_key])
            if isinstance(image, MetaTensor):  # the image's metadata and trace go on; the voxels are new
                image.meta["synthetic"] = True
            d[self.image_key], d[self.label_key] = image, label
            info["model"] = model.name
        for key in (self.image_key, self.label_key):
            if isinstance(d[key], MetaTensor) and self.tracing:
                d[key] = self.push_transform(d[key], extra_info=info)
        return d

    def inverse(self, data: Mapping[Hashable, torch.Tensor]) -> dict[Hashable, torch.Tensor]:
        """Warp back to the original label's anatomy (the image stays synthetic)."""
        d = dict(data)
        v = None
        for key, mode in ((self.image_key, "bilinear"), (self.label_key, "nearest")):
            if key not in d or not isinstance(d[key], MetaTensor) or not d[key].applied_operations:
                continue
            op = self.pop_transform(d[key])
            if not op["do_transforms"]:
                continue
            x = op["extra_info"]
            if v is None:
                v = invert_displacement(random_displacement(x["seed"], d[key].shape[1:], x["spacing_mm"],
                                                            x["strength"]))
            d[key] = warp_volume(d[key], v, mode, "border" if mode == "bilinear" else "zeros")
        return d


def synthetic_pairs(
    model: str | Path, label_items: Sequence[Mapping[str, Any]], *, per_item: int = 1, seed: int = 0,
    strength: float = 0.5, device: str = "cpu",
) -> list[dict[str, Any]]:
    """New image/label pairs from a label-conditioned GAN or diffusion model folder, on each label's own grid.

    Each label ``(1, X, Y, Z)`` (0-3) is deformed at its own resolution by the cohort deformation
    (:class:`~medgen.augment.deform.RandDeformd`, nearest), resampled (nearest) to the model's voxel spacing,
    rendered by :class:`RandSyntheticPaird` (no further deformation) and the image
    brought back (linear) to the deformed label's grid. So a GAN trained on coarser voxels (e.g.
    ``data.downsample: 2``) still gets labels at its own scale (``RandSyntheticPaird`` alone would
    centre-crop a finer label map to the model size), and the pair stays aligned.

    Returns:
        ``[{"image": (1, X, Y, Z) in the model's data units (synthetic), "label": uint8, "subject_id"}]``,
        ``per_item`` per label item, deterministic by ``seed``.
    """
    model_spacing = spacing_from_affine(np.asarray(LazyModel(model, device).get().reference["affine"]))
    deform = RandDeformd(["label"], mode="nearest", prob=1.0, strength=strength)
    render = RandSyntheticPaird("image", "label", model=model, strength=0.0, prob=1.0, device=device)
    out = []
    for i, item in enumerate(label_items):
        for k in range(per_item):
            pair_seed = seed + i * per_item + k
            deform.set_random_state(pair_seed)
            label = deform({"label": item["label"]})["label"]
            same_grid = np.allclose(spacing_from_affine(affine_of(label)), model_spacing, rtol=0.01)
            coarse = label.float() if same_grid else Spacing(pixdim=list(model_spacing), mode="nearest")(label.float())
            render.set_random_state(pair_seed)
            image = render({"image": coarse.clone(), "label": coarse})["image"]
            # voxel for voxel on the coarse label's grid; RandSyntheticPaird's affine can be a voxel off
            # after its pad/crop to the model size, so the geometry is taken from the label
            image = like(coarse, torch.as_tensor(image).as_subclass(torch.Tensor), synthetic=True)
            if not same_grid:
                image = ResampleToMatch(mode="bilinear", padding_mode="border")(image, img_dst=label)
            image.meta["synthetic"] = True
            out.append({"image": image, "label": label.to(torch.uint8),
                        "subject_id": f"{item.get('subject_id', i)}-syn{k}"})
    return out
