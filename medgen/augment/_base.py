"""Plumbing shared by medgen's random transforms: one seed per call, a trace record, pass-through inverses.

Every medgen random transform draws its whole randomness for one call as a single integer seed from
``self.R`` (the ``numpy.random.RandomState`` that MONAI's ``set_random_state``, ``Compose`` and the
``DataLoader`` worker seeding reach). The seed goes into the applied-operations record, so a trace
says exactly how to redo the draw.

Intensity changes leave the voxel grid alone, so their inverse (what ``Invertd`` applies to a
prediction) is the identity: :class:`SeededRandomTransform` pops its record and returns the data
unchanged. That keeps ``Invertd`` working through pipelines that mix medgen and MONAI transforms.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Hashable, Mapping
from typing import Any

import numpy as np
import torch
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.transforms import InvertibleTransform, MapTransform, RandomizableTransform
from monai.transforms.traits import ThreadUnsafe
from monai.utils import TransformBackends, convert_to_dst_type

MAX_SEED = 2**31 - 1


def draw_seed(rng: np.random.RandomState) -> int:
    """One integer seed in ``[0, 2**31 - 1)`` from a transform's random state."""
    return int(rng.randint(0, MAX_SEED))


def trace(transform: InvertibleTransform, img: Any, info: dict[str, Any]) -> Any:
    """Push ``info`` onto ``img``'s applied operations (no-op for plain tensors or with tracing off)."""
    if isinstance(img, MetaTensor) and transform.tracing:
        return transform.push_transform(img, extra_info=info)
    return img


def untrace(transform: InvertibleTransform, img: Any) -> Any:
    """Pop ``transform``'s record from ``img`` if there is one; the voxels are returned unchanged."""
    if isinstance(img, MetaTensor) and img.applied_operations:
        transform.pop_transform(img)
    return img


def like_input(out: torch.Tensor | np.ndarray, img: Any) -> Any:
    """``out`` as the type of ``img`` (a MetaTensor keeps ``img``'s metadata and trace), same dtype."""
    result, *_ = convert_to_dst_type(out, img, dtype=img.dtype)
    return result


class SeedDrawing(RandomizableTransform):
    """A MONAI randomizable transform that draws one integer ``seed`` per call from its own random
    state (so ``set_random_state``, ``Compose`` and DataLoader worker seeding reach it); the
    deterministic work then runs from that seed alone, which the applied-operations trace records."""

    seed: int = 0

    def randomize(self, data: Any = None) -> None:
        super().randomize(None)
        self.seed = draw_seed(self.R)


class SeededRandomTransform(SeedDrawing, InvertibleTransform, ThreadUnsafe):
    """An array transform ``(C, X, Y, Z) -> (C, X, Y, Z)`` whose draw is one seed per call.

    Subclasses implement :meth:`apply` (deterministic given the seed). ``ThreadUnsafe``: the last
    draw (``_do_transform``, ``seed``) is kept on the instance between ``randomize`` and the call.
    """

    backend = [TransformBackends.TORCH]

    def __init__(self, prob: float = 1.0) -> None:
        RandomizableTransform.__init__(self, prob)
        self.seed = 0

    @abstractmethod
    def apply(self, img: torch.Tensor, seed: int) -> tuple[torch.Tensor, dict[str, Any]]:
        """The transform for one ``seed``: returns the new image and what was done (JSON-able)."""

    def __call__(self, img: torch.Tensor, randomize: bool = True) -> torch.Tensor:
        if randomize:
            self.randomize()
        info: dict[str, Any] = {"seed": self.seed}
        if self._do_transform:
            img, done = self.apply(img, self.seed)
            info.update(done)
        return trace(self, img, info)

    def inverse(self, data: torch.Tensor) -> torch.Tensor:
        """Identity on the voxels (intensity-only change); removes this transform's trace record."""
        return untrace(self, data)


class SeededRandomTransformd(SeedDrawing, MapTransform, InvertibleTransform, ThreadUnsafe):
    """Dictionary twin of a :class:`SeededRandomTransform`: one draw per call, the same for every key.

    Subclasses set ``array_class``; keyword arguments other than ``keys``, ``prob`` and
    ``allow_missing_keys`` go to it.
    """

    array_class: type[SeededRandomTransform] = SeededRandomTransform
    backend = SeededRandomTransform.backend

    def __init__(self, keys: KeysCollection, prob: float = 1.0, allow_missing_keys: bool = False, **kwargs: Any):
        MapTransform.__init__(self, keys, allow_missing_keys)
        RandomizableTransform.__init__(self, prob)
        self.transform = self.array_class(prob=1.0, **kwargs)
        self.seed = 0

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> dict[Hashable, torch.Tensor]:
        d = dict(data)
        self.randomize()
        for key in self.key_iterator(d):
            info: dict[str, Any] = {"seed": self.seed}
            if self._do_transform:
                d[key], done = self.transform.apply(d[key], self.seed)
                info.update(done)
            d[key] = trace(self, d[key], info)
        return d

    def inverse(self, data: Mapping[Hashable, torch.Tensor]) -> dict[Hashable, torch.Tensor]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = untrace(self, d[key])
        return d


def run_seeded(steps: list[tuple[str, RandomizableTransform]], img: Any, seed: int) -> tuple[Any, list[str]]:
    """Run MONAI random array transforms in order, each reseeded from ``seed``; names of those that fired.

    Each step keeps its own ``prob``; reseeding from one call seed makes the whole chain one draw.
    """
    fired = []
    for i, (name, step) in enumerate(steps):
        if isinstance(step, InvertibleTransform):
            step.tracing = False  # the preset records the whole draw once
        step.set_random_state(seed=(seed + 7919 * (i + 1)) % MAX_SEED)
        img = step(img)
        if getattr(step, "_do_transform", True):
            fired.append(name)
    return img, fired
