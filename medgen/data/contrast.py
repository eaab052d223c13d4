"""MR-like intensities from tissue maps: T1-, T2- and PD-like contrast, bias field, blur, Rician noise.

Physics, simplified to what a generative model must learn to respect:

- **Contrast.** Each voxel mixes tissues by their probabilities ``p_csf, p_gm, p_wm`` (partial
  volume), each tissue having one mean intensity ``mu_k`` per subject: T1-weighted WM > GM > CSF,
  T2-weighted CSF > GM > WM, proton-density-weighted CSF >= GM > WM with low contrast. The means
  are drawn per subject in non-overlapping ranges (arbitrary units, brain roughly 0-1).
- **Texture.** Real anatomy is more than three tissues (deep grey nuclei, cerebellar folia, the
  corpus callosum). The template T1's ratio to its own tissue mixture, ``r = T1 / sum_k p_k m_k - 1``,
  carries that texture; the image is ``sum_k p_k mu_k * (1 + c r)`` with ``c = 1`` for T1 (so the
  template with template means gives the template back) and a negative ``c`` for T2/PD (what is
  dark on T1 is mostly bright on T2).
- **Bias field.** Receive-coil inhomogeneity multiplies the image by a smooth field
  ``exp(b g(x))``, ``g`` a unit-RMS random field with ~60 mm correlation length.
- **Resolution.** The point-spread function of a coarser or thick-slice acquisition: a Gaussian blur,
  optionally stronger along one (slice) axis.
- **Noise.** Magnitude images have Rician noise: ``|I + n_1 + i n_2|``, ``n ~ N(0, sigma)``, with
  ``sigma = noise * mu_wm``-ish (a fraction of the brightest tissue).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from medgen.data.deform import gaussian_smooth, smooth_random_field
from medgen.errors import DataError

CONTRASTS = ("t1", "t2", "pd")
# Per-subject tissue mean ranges (csf, gm, wm): ranges of one contrast never overlap, so the tissue
# order holds for every subject.
TISSUE_MEAN_RANGES = {
    "t1": ((0.15, 0.35), (0.55, 0.68), (0.82, 0.95)),
    "t2": ((0.85, 1.00), (0.50, 0.62), (0.33, 0.44)),
    "pd": ((0.92, 1.00), (0.68, 0.76), (0.54, 0.62)),
}
TEXTURE_SIGN = {"t1": 1.0, "t2": -0.6, "pd": -0.3}


@dataclass(frozen=True)
class ContrastParams:
    """Random acquisition parameters of one simulated MR image (drawn by :meth:`draw`)."""

    contrast: str
    means: tuple[float, float, float]  # csf, gm, wm
    bias: float  # strength b of the bias field exp(b g)
    blur_vox: tuple[float, float, float]  # Gaussian PSF sigma per axis (voxels)
    noise: float  # Rician sigma as a fraction of the brightest tissue mean
    seed: int

    @classmethod
    def draw(
        cls, rng: np.random.Generator, contrast: str = "t1", *, noise: float | None = None,
        bias: float | None = None, blur: bool = True,
    ) -> ContrastParams:
        """Draw parameters; ``contrast`` ``"t1"``, ``"t2"``, ``"pd"`` or ``"random"``; ``noise`` and
        ``bias`` fixed if given (0 disables), random otherwise."""
        name = contrast.lower()
        if name == "random":
            name = CONTRASTS[int(rng.integers(len(CONTRASTS)))]
        if name not in CONTRASTS:
            raise DataError(f"unknown contrast {contrast!r}; choose one of {', '.join(CONTRASTS)} or 'random'")
        means = tuple(float(rng.uniform(lo, hi)) for lo, hi in TISSUE_MEAN_RANGES[name])
        sigma = [float(v) for v in rng.uniform(0.0, 0.3, 3)]
        if rng.random() < 0.4:  # thick-slice acquisition along one axis
            sigma[int(rng.integers(3))] += float(rng.uniform(0.2, 0.6))
        drawn_noise = float(rng.uniform(0.01, 0.04))
        drawn_bias = float(rng.uniform(0.03, 0.15))
        return cls(
            contrast=name,
            means=means,
            bias=drawn_bias if bias is None else float(bias),
            blur_vox=tuple(sigma) if blur else (0.0, 0.0, 0.0),
            noise=drawn_noise if noise is None else float(noise),
            seed=int(rng.integers(2**31)),
        )


def tissue_image(probs: torch.Tensor, residual: torch.Tensor, params: ContrastParams) -> torch.Tensor:
    """Noise-free image ``(1, X, Y, Z)`` from ``probs`` ``(3, X, Y, Z)`` (CSF, GM, WM) and the T1
    texture ``residual`` ``(1, X, Y, Z)``; background (no tissue) is 0."""
    means = torch.as_tensor(params.means, dtype=probs.dtype).view(3, 1, 1, 1)
    mix = (probs * means).sum(0, keepdim=True)
    return mix * (1.0 + TEXTURE_SIGN[params.contrast] * residual)


def bias_field(shape: tuple[int, int, int], spacing_mm: float, params: ContrastParams) -> torch.Tensor:
    """Smooth multiplicative field ``(1, X, Y, Z)``, ``exp(b g)``, ``g`` unit RMS, ~60 mm smooth."""
    if params.bias == 0.0:
        return torch.ones((1, *shape))
    coarse = tuple(max(4, round(n * spacing_mm / 8.0)) for n in shape)  # 8 mm grid is plenty
    gen = torch.Generator().manual_seed(params.seed)
    g = smooth_random_field(coarse, 60.0 / 8.0, gen, channels=1)
    g = F.interpolate(g[None], size=shape, mode="trilinear", align_corners=True)[0]
    return torch.exp(params.bias * g)


def blur(image: torch.Tensor, params: ContrastParams) -> torch.Tensor:
    """Gaussian PSF blur of ``image`` ``(C, X, Y, Z)`` with per-axis sigma ``params.blur_vox``."""
    if max(params.blur_vox) < 0.05:
        return image
    return gaussian_smooth(image, tuple(max(s, 1e-3) for s in params.blur_vox))


def rician_noise(image: torch.Tensor, params: ContrastParams) -> torch.Tensor:
    """``|image + n_1 + i n_2|`` with ``n ~ N(0, noise * max(tissue means))`` (seeded)."""
    if params.noise == 0.0:
        return image
    sigma = params.noise * max(params.means)
    gen = torch.Generator().manual_seed(params.seed + 1)
    n1 = torch.randn(image.shape, generator=gen) * sigma
    n2 = torch.randn(image.shape, generator=gen) * sigma
    return torch.sqrt((image + n1).square() + n2.square())
