"""MR acquisition artefacts as one MONAI-native preset: MONAI's own transforms, plus TorchIO motion.

Each artefact fires independently with its own probability, in the order the physics happens:

1. **Bias field** (:class:`monai.transforms.RandBiasField`): smooth multiplicative receive-coil
   inhomogeneity, a polynomial of ``degree`` in log-intensity with coefficients up to ``bias_coeff``.
2. **Motion** and **ghosting** (TorchIO ``RandomMotion`` / ``RandomGhosting`` via
   :class:`~medgen.augment.RandTorchIOArtifact`, seeded by MONAI's ``set_random_state``): rigid head
   motion during k-space acquisition (``motion_degrees``, ``motion_mm``) and periodic k-space
   modulation that repeats faint copies of the anatomy along the phase direction.
3. **Spikes** (:class:`monai.transforms.RandKSpaceSpikeNoise`): a few corrupt k-space samples give
   a herring-bone stripe pattern.
4. **Gibbs ringing** (:class:`monai.transforms.RandGibbsNoise`): k-space truncation; ``gibbs_alpha``
   is the fraction of k-space cut (0 none, 1 all).
5. **Low resolution** (:class:`monai.transforms.RandSimulateLowResolution`): down-sampling by a
   factor in ``zoom_range`` and back, like a thicker-slice / lower-matrix protocol.
6. **Rician noise** (:class:`monai.transforms.RandRicianNoise`): magnitude-image thermal noise with
   standard deviation up to ``rician_std`` times the image's intensity range.

Units are the image's (any MR scale); the output has the input's shape, dtype and metadata.

>>> aug = RandMRArtifactsd(keys="image", prob=0.8)                      # doctest: +SKIP
>>> aug.set_random_state(seed=0)({"image": scan, "label": lab})["image"]  # doctest: +SKIP
"""

from __future__ import annotations

from typing import Any

import torch
from monai.transforms import (
    RandBiasField,
    RandGibbsNoise,
    RandKSpaceSpikeNoise,
    RandRicianNoise,
    RandSimulateLowResolution,
)

from medgen.augment._base import SeededRandomTransform, SeededRandomTransformd, run_seeded
from medgen.augment.torchio_artifact import RandTorchIOArtifact, has_torchio


class RandMRArtifacts(SeededRandomTransform):
    """Random MR artefacts on ``(C, X, Y, Z)`` (see module docstring); each ``*_prob`` is that artefact's chance.

    Args:
        prob: chance that the preset runs at all; then each artefact fires with its own probability.
        bias_prob, motion_prob, ghosting_prob, spike_prob, gibbs_prob, low_resolution_prob,
            rician_prob: per-artefact probabilities (0 disables; motion/ghosting need TorchIO —
            ``None`` means 0.1 when TorchIO is installed, else 0).
        bias_coeff: range of the bias-field polynomial coefficients (log-intensity).
        motion_degrees, motion_mm: largest rotation (degrees) and translation (mm) of the moves.
        gibbs_alpha: range of the fraction of k-space truncated.
        zoom_range: down-sampling factor range for the low-resolution step (1 = none).
        rician_std: largest noise standard deviation as a fraction of the image's intensity range.
    """

    def __init__(
        self,
        prob: float = 1.0,
        *,
        bias_prob: float = 0.3,
        motion_prob: float | None = None,
        ghosting_prob: float | None = None,
        spike_prob: float = 0.1,
        gibbs_prob: float = 0.2,
        low_resolution_prob: float = 0.2,
        rician_prob: float = 0.3,
        bias_coeff: tuple[float, float] = (0.0, 0.1),
        motion_degrees: float = 4.0,
        motion_mm: float = 4.0,
        gibbs_alpha: tuple[float, float] = (0.0, 0.6),
        zoom_range: tuple[float, float] = (0.5, 1.0),
        rician_std: float = 0.05,
    ) -> None:
        super().__init__(prob)
        default_tio = 0.1 if has_torchio() else 0.0
        motion_prob = default_tio if motion_prob is None else motion_prob
        ghosting_prob = default_tio if ghosting_prob is None else ghosting_prob
        steps: list[tuple[str, Any]] = [("bias_field", RandBiasField(coeff_range=bias_coeff, prob=bias_prob))]
        if motion_prob > 0:
            steps.append(("motion", RandTorchIOArtifact(
                "RandomMotion", prob=motion_prob, degrees=motion_degrees, translation=motion_mm, num_transforms=2)))
        if ghosting_prob > 0:
            steps.append(("ghosting", RandTorchIOArtifact("RandomGhosting", prob=ghosting_prob, intensity=(0.2, 0.6))))
        steps += [
            ("spikes", RandKSpaceSpikeNoise(prob=spike_prob)),
            ("gibbs", RandGibbsNoise(prob=gibbs_prob, alpha=gibbs_alpha)),
            ("low_resolution", RandSimulateLowResolution(prob=low_resolution_prob, zoom_range=zoom_range)),
            ("rician", RandRicianNoise(prob=rician_prob, std=rician_std, relative=True, sample_std=True)),
        ]
        self.steps = steps

    def apply(self, img: torch.Tensor, seed: int) -> tuple[torch.Tensor, dict[str, Any]]:
        dtype = img.dtype
        out, fired = run_seeded(self.steps, img, seed)
        return out.to(dtype), {"artifacts": fired}


class RandMRArtifactsd(SeededRandomTransformd):
    """Dictionary twin of :class:`RandMRArtifacts`: ``RandMRArtifactsd(keys, prob, allow_missing_keys, **kw)``.

    ``keys`` are image keys only (labels must not get artefacts); every key gets the same draw.
    """

    array_class = RandMRArtifacts
