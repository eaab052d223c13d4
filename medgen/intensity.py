"""The robust intensity range of a scan: its 0.5 and 99.5 percentiles.

MR has no absolute unit and a few hot voxels (vessels, artefacts) can sit far above the tissue, so
every place that rescales intensities (denoiser and super-resolution inputs, feature extraction, QC
windows, montages, histogram bins, the training data's normalisation) measures the range the same
way: NumPy's linear-interpolation percentiles (the same rule as ``torch.quantile``, computed in
float64, with no input-size limit). A shared utility that any layer may import; so is the one rule
that tells CT in HU from MR (:func:`is_ct`), used by super-resolution's default and by the QC.
"""

from __future__ import annotations

import numpy as np
import torch

LOW, HIGH = 0.5, 99.5  # percent


def robust_range(
    values: np.ndarray | torch.Tensor, low: float = LOW, high: float = HIGH
) -> tuple[np.float64, np.float64]:
    """``(low, high)`` percentiles (percent, default 0.5 and 99.5) of all of ``values``, any shape.

    Values are in the input's units (HU for CT, scanner units for MR), as NumPy float64 scalars (a
    ``float`` subclass), exactly what ``np.percentile`` gives: arithmetic with float32 arrays
    promotes to float64 as it did before the copies were merged. ``high`` may equal ``low`` for a
    constant input; callers that divide by the width guard against that themselves.

    >>> [float(v) for v in robust_range(np.arange(1001.0))]
    [5.0, 995.0]
    """
    if isinstance(values, torch.Tensor):
        values = values.detach().cpu().numpy()
    lo, hi = np.percentile(values, [low, high])
    return lo, hi


CT_AIR_CUT = -900.0  # HU: a CT with air in view has its darkest 1 % near -1000; no MR magnitude goes there


def is_ct(x: np.ndarray | float, modality: str = "", units: str = "") -> bool:
    """Whether a scan is CT in HU: said by its metadata (``modality`` CT, ``units`` HU) or, with no
    modality given (NRRD and MHA files carry none), its darkest 1 % at or below :data:`CT_AIR_CUT`.

    ``x``: the scan ``(X, Y, Z)`` in its units, or its 1st percentile when already computed.
    """
    if modality.upper() == "CT" or units.upper() == "HU":
        return True
    p1 = float(x) if np.ndim(x) == 0 else float(np.percentile(x, 1))
    return not modality and p1 <= CT_AIR_CUT
