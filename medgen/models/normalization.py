"""Intensity normalisation recorded with a model, so samples come back in the data's units.

MR has no absolute unit: intensities are clipped to a percentile range measured on the training set
and mapped to [-1, 1]. CT is in Hounsfield units: a fixed HU window (e.g. [-1000, 1000] HU) is mapped
to [-1, 1], so ``to_units`` returns HU exactly.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Literal

import numpy as np
import torch

from medgen.intensity import robust_range


@dataclass
class Normalization:
    """Linear map of ``[low, high]`` (data units, clipped) onto ``[-1, 1]``.

    Attributes:
        kind: ``"percentile"`` (low/high measured on training data) or ``"window"`` (fixed, e.g. HU).
        low, high: the data values that map to -1 and +1.
        units: the data's units (``"HU"`` for CT, ``""`` for MR).
    """

    kind: Literal["percentile", "window"]
    low: float
    high: float
    units: str = ""

    def to_model(self, x: torch.Tensor) -> torch.Tensor:
        """Data units → model range [-1, 1] (values outside ``[low, high]`` are clipped)."""
        x = x.clamp(self.low, self.high)
        return (x - self.low) / (self.high - self.low) * 2.0 - 1.0

    def to_units(self, y: torch.Tensor) -> torch.Tensor:
        """Model range [-1, 1] → data units (inverse of :meth:`to_model` inside the window)."""
        return (y.clamp(-1.0, 1.0) + 1.0) / 2.0 * (self.high - self.low) + self.low

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> Normalization:
        return cls(**data)


def fit_percentile(images: list[torch.Tensor], low: float = 0.5, high: float = 99.5, units: str = "") -> Normalization:
    """Percentile normalisation measured over all voxels of ``images`` (each ``(C, *spatial)``)."""
    flat = np.concatenate([np.asarray(im.detach().cpu().float()).ravel() for im in images])
    lo, hi = robust_range(flat, low, high)
    if hi <= lo:
        hi = lo + 1.0
    return Normalization("percentile", float(lo), float(hi), units)
