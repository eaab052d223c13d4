"""Generative variation of a real scan (SDEdit): noise it part of the way, let the diffusion model denoise it back.

Noising to strength ``s`` (a fraction of the diffusion time) destroys detail below a scale that
grows with ``s`` and keeps the coarse anatomy; denoising re-synthesises that detail from the model's
learnt distribution (texture, contrast, noise of the training scans). For small ``s`` the anatomy,
and so the label map, is kept: the case gets a new appearance with the same ground truth. ``s``
sets how far it wanders (0: unchanged, 1: an unrelated sample).

The model is a medgen diffusion model folder (family ``diffusion`` or ``ldm``, or a shipped name), loaded
lazily once per process (see :mod:`medgen.augment._lazy_model`); the scan is mapped to the model's
range and size and back to its own units and shape. Cost: ``steps * s`` network evaluations per call
(GPU recommended on the fly; else write a synthetic pool once with :func:`medgen.augment.write_pool`).

>>> aug = RandGenerativeVariationd("image", model="runs/ddpm/model", strength=(0.1, 0.3))  # doctest: +SKIP
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from monai.data import MetaTensor

from medgen.augment._base import SeededRandomTransform, SeededRandomTransformd, like_input
from medgen.augment._generative import check_compatible, from_model_space, sdedit, to_model_space
from medgen.augment._lazy_model import LazyModel


class RandGenerativeVariation(SeededRandomTransform):
    """SDEdit variation of ``(C, X, Y, Z)`` in data units (see module docstring).

    Args:
        model: a medgen diffusion model folder (pixel or latent) or a shipped name.
        strength: ``(low, high)`` range the strength is drawn from, in (0, 1].
        steps: sampler steps over the full time range (``steps * strength`` are run).
        prob: chance of applying it.
        device: ``"auto"`` (CUDA when usable in this process), ``"cpu"``, ``"cuda"``, ``"cuda:1"``...
    """

    def __init__(self, model: str | Path, strength: tuple[float, float] = (0.1, 0.3), steps: int = 20,
                 prob: float = 1.0, device: str = "auto") -> None:
        super().__init__(prob)
        if not 0.0 <= strength[0] <= strength[1] <= 1.0:
            raise ValueError(f"strength must satisfy 0 <= low <= high <= 1, got {strength}")
        self.model, self.strength, self.steps = LazyModel(model, device), tuple(strength), steps

    def apply(self, img: torch.Tensor, seed: int) -> tuple[torch.Tensor, dict[str, Any]]:
        model = self.model.get()
        check_compatible(model, img)
        s = float(np.random.default_rng(seed).uniform(*self.strength))
        gen = torch.Generator().manual_seed(seed)
        y = sdedit(model, to_model_space(model, img), s, self.steps, gen)
        out = like_input(from_model_space(model, y, tuple(img.shape[1:])).to(torch.as_tensor(img).device), img)
        if isinstance(out, MetaTensor):
            out.meta["synthetic"] = True
        return out, {"model": model.name, "strength": round(s, 4), "steps": self.steps}


class RandGenerativeVariationd(SeededRandomTransformd):
    """Dictionary twin of :class:`RandGenerativeVariation`: image keys only (labels are kept as they are).

    ``RandGenerativeVariationd(keys, model, strength=(0.1, 0.3), steps=20, prob=1.0, device="auto",
    allow_missing_keys=False)``.
    """

    array_class = RandGenerativeVariation

    def __init__(self, keys, model: str | Path, strength: tuple[float, float] = (0.1, 0.3), steps: int = 20,
                 prob: float = 1.0, device: str = "auto", allow_missing_keys: bool = False) -> None:
        super().__init__(keys, prob=prob, allow_missing_keys=allow_missing_keys, model=model, strength=strength,
                         steps=steps, device=device)
