"""Low-dose CT noise in Hounsfield units, in the image domain (Poisson-Gaussian, no streaks).

A CT at dose fraction ``d`` of the scan at hand has noise variance ``sigma_full^2 / d`` (quantum
noise scales with the inverse photon count), so going from full dose to ``d`` adds variance
``sigma_full^2 (1/d - 1)``. Quantum noise grows with attenuation (fewer photons reach the detector
behind dense tissue), so the added noise is Poisson-Gaussian on the attenuation scale
``x = HU + 1000`` (0 for air, 1000 for water)::

    n = g * Poisson(x / g) - x + N(0, sigma_e^2),    var(n) = g x + sigma_e^2

with ``g`` set so that the added standard deviation at water is ``sigma_full * sqrt(1/d - 1)``
(``sigma_e`` = 10 % of it, the electronic floor), then lightly smoothed (``correlation`` voxels)
for the fine-grained, spatially correlated texture of filtered back-projection. No projection and
reconstruction round trip is done, hence no streaks: use :func:`medgen.enhance.noise.add_lowdose_ct`
when streaks are wanted.

>>> aug = RandLowDoseCTNoise(prob=1.0, dose_range=(0.1, 0.5))   # doctest: +SKIP
>>> noisy = aug.set_random_state(seed=0)(ct_hu)                # doctest: +SKIP
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from scipy import ndimage

from medgen.augment._base import SeededRandomTransform, SeededRandomTransformd, like_input


def lowdose_noise_hu(
    hu: np.ndarray, dose: float, rng: np.random.Generator, *, sigma_full: float = 10.0, correlation: float = 0.6,
) -> np.ndarray:
    """Noise (HU) to add to a full-dose CT ``hu`` ``(..., X, Y, Z)`` to look acquired at ``dose`` in ``(0, 1]``.

    Args:
        sigma_full: noise standard deviation of the input at water (HU).
        correlation: Gaussian sigma (voxels) of the noise texture; 0 for white noise.
    """
    extra_sd = sigma_full * np.sqrt(max(1.0 / dose - 1.0, 0.0))
    if extra_sd == 0.0:
        return np.zeros_like(hu, dtype=np.float32)
    electronic = 0.1 * extra_sd
    gain = (extra_sd**2 - electronic**2) / 1000.0
    x = np.clip(np.asarray(hu, dtype=np.float64) + 1000.0, 0.0, None)
    noise = gain * rng.poisson(x / gain) - x + rng.normal(0.0, electronic, x.shape)
    if correlation > 0:
        # texture: smooth the standardised noise (homogeneous, unit variance), restore unit
        # variance, then scale by the local standard deviation so the dose law holds voxel-wise
        sd = np.sqrt(gain * x + electronic**2)
        spatial = (0,) * (noise.ndim - 3) + (correlation,) * 3
        smooth = ndimage.gaussian_filter(noise / sd, spatial)
        noise = sd * smooth / max(float(smooth.std()), 1e-8)
    return noise.astype(np.float32)


class RandLowDoseCTNoise(SeededRandomTransform):
    """Add image-domain low-dose noise to a CT ``(C, X, Y, Z)`` in HU (see module docstring).

    Args:
        prob: chance of applying it.
        dose_range: dose fraction drawn uniformly from this range (1 = the input's dose).
        sigma_full: noise standard deviation (HU) at water of the input scan.
        correlation: noise texture correlation (voxels).
    """

    def __init__(
        self, prob: float = 1.0, dose_range: tuple[float, float] = (0.1, 0.5), sigma_full: float = 10.0,
        correlation: float = 0.6,
    ) -> None:
        super().__init__(prob)
        if not 0 < dose_range[0] <= dose_range[1] <= 1:
            raise ValueError(f"dose_range must satisfy 0 < low <= high <= 1, got {dose_range}")
        self.dose_range, self.sigma_full, self.correlation = tuple(dose_range), sigma_full, correlation

    def apply(self, img: torch.Tensor, seed: int) -> tuple[torch.Tensor, dict[str, Any]]:
        rng = np.random.default_rng(seed)
        dose = float(rng.uniform(*self.dose_range))
        hu = torch.as_tensor(img).detach().cpu().numpy()
        noise = lowdose_noise_hu(hu, dose, rng, sigma_full=self.sigma_full, correlation=self.correlation)
        out = torch.as_tensor(hu + noise).to(torch.as_tensor(img).device)
        return like_input(out, img), {"dose": round(dose, 4)}


class RandLowDoseCTNoised(SeededRandomTransformd):
    """Dictionary twin of :class:`RandLowDoseCTNoise` (image keys only; one dose per call)."""

    array_class = RandLowDoseCTNoise
