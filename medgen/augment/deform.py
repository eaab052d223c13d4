"""Random smooth diffeomorphic deformation (the cohort simulator's), moving images, labels and boxes together.

The displacement is the one :mod:`medgen.data.deform` uses to make the simulated cohort's subjects
from the template: a small random similarity transform (head size ~3 %, rotation ~3 deg, shift
~2 mm at ``strength=1``) composed with the exponential of a smooth random velocity field (RMS
1-2.5 mm, 12-20 mm correlation length), integrated by scaling and squaring, so it is invertible.
Each call draws one seed; the field is rebuilt from it (nothing large is stored in the trace).

- images are resampled bilinearly, label maps with nearest neighbour (``mode`` per key), padding
  with the border value (``-1000`` HU stays ``-1000`` at a CT's edge);
- boxes (MONAI ``StandardMode``, voxel coordinates of ``box_ref_image_keys``) go box → ellipsoid
  mask → warp → box so they stay tight (:mod:`medgen.augment._boxes`);
- the inverse (``Invertd`` at inference) warps with the inverse field, found by fixed-point
  iteration ``v(y) = -u(y + v(y))``, exact to a small fraction of a voxel for these smooth fields.

Voxels are assumed near-isotropic: the field is built on the mean voxel size.

>>> aug = RandDeformd(["image", "label"], mode=["bilinear", "nearest"], prob=0.5)   # doctest: +SKIP
>>> out = aug.set_random_state(seed=0)(subject)                                       # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.networks.blocks import Warp
from monai.transforms import InvertibleTransform, MapTransform, RandomizableTransform
from monai.transforms.traits import ThreadUnsafe
from monai.utils import TransformBackends, ensure_tuple, ensure_tuple_rep

from medgen.augment._base import SeedDrawing, like_input
from medgen.augment._boxes import move_boxes
from medgen.data.deform import DeformationParams, displacement, sampling_positions

INVERSE_ITERATIONS = 8


def spacing_of(img: torch.Tensor) -> float:
    """Mean voxel size (mm) of a MetaTensor, 1.0 for a plain tensor."""
    if isinstance(img, MetaTensor):
        return float(np.linalg.norm(img.affine.detach().cpu().numpy()[:3, :3], axis=0).mean())
    return 1.0


def random_displacement(seed: int, shape: Sequence[int], spacing_mm: float, strength: float) -> torch.Tensor:
    """Displacement ``(3, X, Y, Z)`` in voxels (sample at ``x + u(x)``) of the deformation drawn from ``seed``."""
    params = DeformationParams.draw(np.random.default_rng(seed), strength=strength)
    params = dataclasses.replace(params, ventricle_mm=0.0)  # no anatomy-specific term on arbitrary scans
    shape = tuple(int(n) for n in shape)
    centre = tuple((n - 1) / 2.0 for n in shape)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # MONAI's "using PyTorch native grid_sample"
        positions = sampling_positions(params, shape, spacing_mm, torch.zeros(shape), centre)
        return displacement(positions, shape)


def invert_displacement(u: torch.Tensor, iterations: int = INVERSE_ITERATIONS) -> torch.Tensor:
    """Displacement ``v`` ``(3, X, Y, Z)`` of the inverse map: ``(x + v) + u(x + v) = x``."""
    v = -u.clone()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # MONAI's "using PyTorch native grid_sample"
        warp = Warp(mode="bilinear", padding_mode="border")
        for _ in range(iterations):
            v = -warp(u[None], v[None])[0]
    return v


def warp_volume(img: torch.Tensor, u: torch.Tensor, mode: str = "bilinear", padding_mode: str = "border"):
    """``img`` ``(C, X, Y, Z)`` sampled at ``x + u(x)``; same type, dtype and metadata as ``img``."""
    data = torch.as_tensor(img)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # MONAI's "using PyTorch native grid_sample"
        out = Warp(mode=mode, padding_mode=padding_mode)(data.float()[None], u.to(data.device)[None])[0]
    if not data.is_floating_point():
        out = out.round()
    return like_input(out, img)


class RandDeform(SeedDrawing, InvertibleTransform, ThreadUnsafe):
    """Random smooth diffeomorphism of one ``(C, X, Y, Z)`` array (see module docstring).

    Args:
        prob: chance of deforming.
        strength: scales every spread of the deformation (0 identity, 1 cohort-like).
        mode: ``"bilinear"`` for images, ``"nearest"`` for label maps.
        padding_mode: ``"border"``, ``"zeros"`` or ``"reflection"``.
    """

    backend = [TransformBackends.TORCH]

    def __init__(self, prob: float = 1.0, strength: float = 0.5, mode: str = "bilinear",
                 padding_mode: str = "border") -> None:
        RandomizableTransform.__init__(self, prob)
        self.strength, self.mode, self.padding_mode = strength, mode, padding_mode
        self.seed = 0

    def __call__(self, img: torch.Tensor, randomize: bool = True) -> torch.Tensor:
        if randomize:
            self.randomize()
        info = {"seed": self.seed, "strength": self.strength, "spacing_mm": spacing_of(img)}
        if self._do_transform:
            u = random_displacement(self.seed, img.shape[1:], info["spacing_mm"], self.strength)
            img = warp_volume(img, u, self.mode, self.padding_mode)
        return self.push_transform(img, extra_info=info) if isinstance(img, MetaTensor) else img

    def inverse(self, data: torch.Tensor) -> torch.Tensor:
        op = self.pop_transform(data)
        if not op["do_transforms"]:
            return data
        x = op["extra_info"]
        u = random_displacement(x["seed"], data.shape[1:], x["spacing_mm"], x["strength"])
        return warp_volume(data, invert_displacement(u), self.mode, self.padding_mode)


class RandDeformd(SeedDrawing, MapTransform, InvertibleTransform, ThreadUnsafe):
    """Deform images, label maps and detection boxes of one case with the same random field.

    Args:
        image_keys: voxel keys (images and label maps), all on the same grid.
        box_keys: keys of ``(N, 6)`` StandardMode boxes in voxel coordinates of ``box_ref_image_keys``.
        box_ref_image_keys: the image key the boxes refer to (one, or one per box key).
        label_keys: class-label keys ``(N,)`` that go with ``box_keys`` (same length); rows of
            boxes that leave the volume are dropped from both.
        mode: interpolation per image key (``"bilinear"`` images, ``"nearest"`` label maps).
        prob, strength, padding_mode: as :class:`RandDeform`.
        ellipse_mask: draw boxes as ellipsoids (True) or solid boxes before warping.
        allow_missing_keys: skip absent keys instead of raising.

    With tracing on, boxes come back as ``MetaTensor`` so they carry the trace ``Invertd`` needs.
    """

    backend = RandDeform.backend

    def __init__(
        self,
        image_keys: KeysCollection,
        box_keys: KeysCollection = (),
        box_ref_image_keys: KeysCollection | None = None,
        label_keys: KeysCollection = (),
        mode: str | Sequence[str] = "bilinear",
        prob: float = 1.0,
        strength: float = 0.5,
        padding_mode: str = "border",
        ellipse_mask: bool = True,
        allow_missing_keys: bool = False,
    ) -> None:
        self.image_keys = ensure_tuple(image_keys)
        self.box_keys = ensure_tuple(box_keys)
        self.label_keys = ensure_tuple(label_keys)
        if self.label_keys and len(self.label_keys) != len(self.box_keys):
            raise ValueError("label_keys must have one key per box key")
        ref = box_ref_image_keys if box_ref_image_keys is not None else self.image_keys[0]
        self.box_ref_image_keys = ensure_tuple_rep(ref, len(self.box_keys)) if self.box_keys else ()
        MapTransform.__init__(self, self.image_keys + self.box_keys, allow_missing_keys)
        RandomizableTransform.__init__(self, prob)
        self.modes = ensure_tuple_rep(mode, len(self.image_keys))
        self.strength, self.padding_mode, self.ellipse_mask = strength, padding_mode, ellipse_mask
        self.seed = 0

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> dict[Hashable, torch.Tensor]:
        d = dict(data)
        self.randomize()
        present = [k for k in self.image_keys if k in d]
        if not present:
            if not self.allow_missing_keys:
                raise KeyError(f"RandDeformd: none of the image keys {self.image_keys} is in the data")
            return d
        shape = tuple(d[present[0]].shape[1:])
        info = {"seed": self.seed, "strength": self.strength, "spacing_mm": spacing_of(d[present[0]])}
        u = random_displacement(self.seed, shape, info["spacing_mm"], self.strength) if self._do_transform else None
        for key, mode in zip(self.image_keys, self.modes):
            if key not in d:
                self._check_missing(key)
                continue
            if u is not None:
                d[key] = warp_volume(d[key], u, mode, self.padding_mode)
            d[key] = self._trace(d[key], info)
        for i, box_key in enumerate(self.box_keys):
            if box_key not in d:
                self._check_missing(box_key)
                continue
            if u is not None:
                label_key = self.label_keys[i] if self.label_keys else None
                d[box_key], kept = self._move(d[box_key], tuple(d[self.box_ref_image_keys[i]].shape[1:]), u)
                if label_key is not None and label_key in d:
                    d[label_key] = d[label_key][kept.to(torch.as_tensor(d[label_key]).device)]
            d[box_key] = self._trace(d[box_key], info)
        return d

    def inverse(self, data: Mapping[Hashable, torch.Tensor]) -> dict[Hashable, torch.Tensor]:
        d = dict(data)
        inverses: dict[tuple, torch.Tensor] = {}  # one inverse field per draw, shared by the keys

        def inverse_field(x: dict[str, Any], shape: tuple[int, ...]) -> torch.Tensor:
            k = (x["seed"], shape, x["spacing_mm"], x["strength"])
            if k not in inverses:
                inverses[k] = invert_displacement(random_displacement(x["seed"], shape, x["spacing_mm"], x["strength"]))
            return inverses[k]

        for key in self.key_iterator(d):
            if not isinstance(d[key], MetaTensor) or not d[key].applied_operations:
                continue
            op = self.pop_transform(d[key])
            if not op["do_transforms"]:
                continue
            if key in self.image_keys:
                mode = self.modes[self.image_keys.index(key)]
                v = inverse_field(op["extra_info"], tuple(d[key].shape[1:]))
                d[key] = warp_volume(d[key], v, mode, self.padding_mode)
            else:
                ref = self.box_ref_image_keys[self.box_keys.index(key)]
                shape = tuple(d[ref].shape[1:])
                d[key], _ = self._move(d[key], shape, inverse_field(op["extra_info"], shape))
        return d

    def _move(self, boxes: torch.Tensor, shape: tuple[int, int, int], u: torch.Tensor):
        moved, kept = move_boxes(boxes, shape, lambda m: warp_volume(m, u, "nearest", "zeros"),
                                 ellipse_mask=self.ellipse_mask)
        return like_input(moved, boxes) if isinstance(boxes, MetaTensor) else moved.to(torch.as_tensor(boxes)), kept

    def _trace(self, value: Any, info: dict[str, Any]) -> Any:
        if not self.tracing:
            return value
        if not isinstance(value, MetaTensor):  # boxes: a MetaTensor carries their trace, for Invertd
            value = MetaTensor(torch.as_tensor(value))
        return self.push_transform(value, extra_info=info)

    def _check_missing(self, key: Hashable) -> None:
        if not self.allow_missing_keys:
            raise KeyError(f"RandDeformd: key '{key}' is not in the data")
