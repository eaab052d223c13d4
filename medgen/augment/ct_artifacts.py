"""CT acquisition variation as one MONAI-native preset, in Hounsfield units.

Each part fires independently with its own probability:

1. **Slice thickness / matrix** (:class:`monai.transforms.RandSimulateLowResolution`): down-sampling
   by a factor in ``zoom_range`` and back.
2. **Low dose** (:class:`~medgen.augment.RandLowDoseCTNoise`): Poisson-Gaussian quantum and
   electronic noise for a dose fraction in ``dose_range``, streak-free.
3. **Reconstruction kernel** (:class:`monai.transforms.RandGaussianSmooth`): a softer kernel blurs
   anatomy and noise alike (sigma in voxels in ``kernel_sigma``).

The output stays in HU, with the input's shape, dtype and metadata.

>>> aug = RandCTArtifactsd(keys="image", prob=0.8)          # doctest: +SKIP
"""

from __future__ import annotations

from typing import Any

import torch
from monai.transforms import RandGaussianSmooth, RandSimulateLowResolution

from medgen.augment._base import SeededRandomTransform, SeededRandomTransformd, run_seeded
from medgen.augment.ct_noise import RandLowDoseCTNoise


class RandCTArtifacts(SeededRandomTransform):
    """Random CT acquisition variation on ``(C, X, Y, Z)`` in HU (see module docstring).

    Args:
        prob: chance that the preset runs at all.
        low_resolution_prob, noise_prob, kernel_prob: per-part probabilities (0 disables).
        zoom_range: down-sampling factor range (1 = none).
        dose_range: dose fraction range of the low-dose noise; ``sigma_full``: the input's noise (HU).
        kernel_sigma: range of the reconstruction-kernel Gaussian sigma (voxels).
    """

    def __init__(
        self,
        prob: float = 1.0,
        *,
        low_resolution_prob: float = 0.2,
        noise_prob: float = 0.5,
        kernel_prob: float = 0.2,
        zoom_range: tuple[float, float] = (0.5, 1.0),
        dose_range: tuple[float, float] = (0.1, 0.5),
        sigma_full: float = 10.0,
        kernel_sigma: tuple[float, float] = (0.3, 1.0),
    ) -> None:
        super().__init__(prob)
        self.steps: list[tuple[str, Any]] = [
            ("low_resolution", RandSimulateLowResolution(prob=low_resolution_prob, zoom_range=zoom_range)),
            ("low_dose", RandLowDoseCTNoise(prob=noise_prob, dose_range=dose_range, sigma_full=sigma_full)),
            ("kernel", RandGaussianSmooth(kernel_sigma, kernel_sigma, kernel_sigma, prob=kernel_prob)),
        ]

    def apply(self, img: torch.Tensor, seed: int) -> tuple[torch.Tensor, dict[str, Any]]:
        dtype = img.dtype
        out, fired = run_seeded(self.steps, img, seed)
        return out.to(dtype), {"artifacts": fired}


class RandCTArtifactsd(SeededRandomTransformd):
    """Dictionary twin of :class:`RandCTArtifacts` (image keys only; one draw per call for all keys)."""

    array_class = RandCTArtifacts
