"""The robust intensity range of a scan: its 0.5 and 99.5 percentiles.

MR has no absolute unit and a few hot voxels (vessels, artefacts) can sit far above the tissue, so
every place that rescales intensities (denoiser and super-resolution inputs, feature extraction, QC
windows, montages, histogram bins, the training data's normalisation) measures the range the same
way: NumPy's linear-interpolation percentiles (the same rule as ``torch.quantile``, computed in
float64, with no input-size limit). A shared utility that any layer may import.
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
