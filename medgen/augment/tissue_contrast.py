"""Random tissue contrast rendered from the label map: the same anatomy as another sequence would show it.

A segmentation network trained on T1-weighted scans fails on T2 or PD scans of the same anatomy: it
has learnt the intensities, not the shapes. Rendering the image again from its own label map with
random per-label intensities (domain randomisation, as in SynthSeg: Billot et al., Medical Image
Analysis 2023) removes that shortcut, and the label stays exact because the new image is made *from*
it. Per call, for every channel:

1. **Contrast.** Each label ``k`` gets a random mean ``mu_k ~ U(0, 1)`` (the background label 0
   ``U(background)``), so every ordering of tissue brightness occurs.
2. **Texture.** The scan's own detail inside each label, ``r = (img - mean_k(img)) / range`` (the
   input's 0.5-99.5 percentile range; clipped to ``[-0.5, 0.5]``), is kept with a random signed
   weight ``c ~ U(texture)``: ``mu_k + c r``. A negative ``c`` inverts it, as T2 does to what T1
   shows dark. (Detail relative to the range, not to the label's mean: a dark label such as CSF on
   T1 would otherwise come out as amplified noise and stop being learnable.)
3. **Partial volume and resolution.** A Gaussian blur of up to ``blur_vox`` voxels per axis.
4. **Bias field** ``exp(b g)`` (``b ~ U(0, bias)``, ``g`` smooth unit-RMS, ~60 mm) and **Rician
   noise** (std ``U(noise)`` of the brightest label mean), with :mod:`medgen.data.contrast`'s physics.

The result is mapped back onto the input's robust intensity range (0.5-99.5 percentiles), so the
units stay plausible for later intensity transforms. Works for any integer label map (tissues,
organs, lesions; CT or MR), any number of labels. The voxel grid is untouched: the inverse
(``Invertd``) is the identity.

>>> aug = RandTissueContrastd("image", label_key="label", prob=0.8)      # doctest: +SKIP
>>> out = aug.set_random_state(seed=0)({"image": t1, "label": tissues})   # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from typing import Any

import numpy as np
import torch
from monai.config import KeysCollection
from monai.transforms import InvertibleTransform, MapTransform, RandomizableTransform
from monai.transforms.traits import ThreadUnsafe
from monai.utils import TransformBackends

from medgen.augment._base import SeedDrawing, like_input, trace, untrace
from medgen.augment.deform import spacing_of
from medgen.data.contrast import ContrastParams, bias_field, blur, rician_noise
from medgen.errors import DataError
from medgen.intensity import robust_range

MAX_LABELS = 1024


def render_tissue_contrast(
    img: torch.Tensor,
    label: torch.Tensor,
    seed: int,
    *,
    texture: tuple[float, float] = (-1.0, 1.0),
    background: tuple[float, float] = (0.0, 0.15),
    blur_vox: float = 1.0,
    bias: float = 0.2,
    noise: tuple[float, float] = (0.0, 0.06),
    min_contrast: float = 0.0,
    mix: tuple[float, float] | None = None,
) -> tuple[torch.Tensor, dict[str, Any]]:
    """``img`` ``(C, X, Y, Z)`` re-rendered from ``label`` ``(1, X, Y, Z)`` integers (module docstring).

    ``min_contrast``: any two label means at least this far apart (fraction of the range), so no draw
    makes two tissues indistinguishable. ``mix``: return ``a * rendered + (1 - a) * img`` with
    ``a ~ U(mix)`` instead of the rendered image (real and re-rendered contrast mixed).

    Returns:
        ``(image, info)``: the new image (type, dtype and metadata of ``img``, the input's intensity
        range) and the drawn label means per channel.
    """
    lab = torch.as_tensor(label).detach().cpu()
    if lab.shape[-3:] != img.shape[-3:]:
        raise DataError(f"RandTissueContrast: label grid {tuple(lab.shape[-3:])} differs from image "
                        f"{tuple(img.shape[-3:])}")
    lab = lab.reshape(lab.shape[-3:]).round().long()
    if lab.numel() and (lab.min() < 0 or lab.max() >= MAX_LABELS):
        raise DataError(f"RandTissueContrast: label values must be integers 0..{MAX_LABELS - 1}")
    rng = np.random.default_rng(seed)
    data = torch.as_tensor(img).detach().cpu().float()
    present = torch.unique(lab)
    spacing = spacing_of(img)
    channels, means_drawn = [], []
    for c in range(data.shape[0]):
        x = data[c]
        mu = torch.zeros(int(lab.max()) + 1)
        mu[present] = torch.as_tensor(_draw_means(rng, len(present), 0 in present.tolist(), background,
                                                  min_contrast), dtype=torch.float32)
        own = torch.zeros_like(mu).index_add_(0, lab.flatten(), x.flatten())
        own = own / torch.bincount(lab.flatten(), minlength=len(mu)).clamp(min=1)
        ref = own[lab]
        lo, hi = robust_range(x)
        resid = ((x - ref) / max(float(hi - lo), 1e-6)).clamp(-0.5, 0.5)
        out = (mu[lab] + float(rng.uniform(*texture)) * resid).clamp_min(0.0)
        params = ContrastParams(contrast="random", means=(float(mu.max()),) * 3, bias=float(rng.uniform(0.0, bias)),
                                blur_vox=tuple(float(v) for v in rng.uniform(0.0, blur_vox, 3)),
                                noise=float(rng.uniform(*noise)), seed=int(rng.integers(2**31 - 2)))
        out = blur(out[None], params) * bias_field(tuple(out.shape), spacing, params)
        out = rician_noise(out, params)[0]
        o_lo, o_hi = robust_range(out)
        out = (out - o_lo) / max(o_hi - o_lo, 1e-6) * (hi - lo) + lo
        if mix is not None:
            a = float(rng.uniform(*mix))
            out = a * out + (1.0 - a) * x
        channels.append(out)
        means_drawn.append([round(float(mu[k]), 4) for k in present.tolist()])
    info = {"labels": present.tolist(), "means": means_drawn}
    return like_input(torch.stack(channels).to(data.dtype), img), info


def _draw_means(rng: np.random.Generator, n: int, has_background: bool, background: tuple[float, float],
                gap: float) -> np.ndarray:
    """``n`` label means in ``[0, 1]`` (the first from ``background`` when ``has_background``), any two at
    least ``gap`` apart (rejection sampling; the gap shrinks when ``n`` labels cannot fit it)."""
    gap = min(gap, 0.9 / max(n - 1, 1))
    for _ in range(1000):
        mu = rng.uniform(0.0, 1.0, n)
        if has_background:
            mu[0] = rng.uniform(*background)
        if gap <= 0 or n < 2 or np.diff(np.sort(mu)).min() >= gap:
            return mu
    return mu


class RandTissueContrast(SeedDrawing, InvertibleTransform, ThreadUnsafe):
    """Array version: ``RandTissueContrast(prob, **kw)(img, label)``; keywords as :func:`render_tissue_contrast`."""

    backend = [TransformBackends.TORCH]

    def __init__(self, prob: float = 1.0, **kwargs: Any) -> None:
        RandomizableTransform.__init__(self, prob)
        self.kwargs = kwargs
        self.seed = 0

    def __call__(self, img: torch.Tensor, label: torch.Tensor, randomize: bool = True) -> torch.Tensor:
        if randomize:
            self.randomize()
        info: dict[str, Any] = {"seed": self.seed}
        if self._do_transform:
            img, done = render_tissue_contrast(img, label, self.seed, **self.kwargs)
            info.update(done)
        return trace(self, img, info)

    def inverse(self, data: torch.Tensor) -> torch.Tensor:
        """Identity on the voxels (intensities only); removes this transform's trace record."""
        return untrace(self, data)


class RandTissueContrastd(SeedDrawing, MapTransform, InvertibleTransform, ThreadUnsafe):
    """Dictionary version: re-render the image ``keys`` from ``label_key`` (left unchanged).

    Args:
        keys: image keys, each ``(C, X, Y, Z)`` on the label's grid; each key gets its own means.
        label_key: the integer label map ``(1, X, Y, Z)``.
        prob: chance of re-rendering; other keywords as :func:`render_tissue_contrast`.
    """

    backend = RandTissueContrast.backend

    def __init__(self, keys: KeysCollection, label_key: str = "label", prob: float = 1.0,
                 allow_missing_keys: bool = False, **kwargs: Any) -> None:
        MapTransform.__init__(self, keys, allow_missing_keys)
        RandomizableTransform.__init__(self, prob)
        self.label_key, self.kwargs = label_key, kwargs
        self.seed = 0

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> dict[Hashable, torch.Tensor]:
        d = dict(data)
        self.randomize()
        for i, key in enumerate(self.key_iterator(d)):
            info: dict[str, Any] = {"seed": self.seed}
            if self._do_transform:
                if self.label_key not in d:
                    raise KeyError(f"RandTissueContrastd: label key '{self.label_key}' is not in the data")
                d[key], done = render_tissue_contrast(d[key], d[self.label_key], self.seed + i, **self.kwargs)
                info.update(done)
            d[key] = trace(self, d[key], info)
        return d

    def inverse(self, data: Mapping[Hashable, torch.Tensor]) -> dict[Hashable, torch.Tensor]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = untrace(self, d[key])
        return d
