"""Whole-volume inference of a 3D network with bounded memory (MONAI ``SlidingWindowInferer``).

A volume of any size is cut into overlapping ``roi``-sized windows; each window goes through the
network on ``device`` and the outputs are blended with Gaussian weights into a CPU buffer, so peak
memory is the volume (input + output + weight map, 12 bytes a voxel) plus one window's activations.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from monai.data.utils import dense_patch_slices
from monai.inferers import SlidingWindowInferer

from medgen.errors import ConfigError

DEFAULT_ROI = (96, 96, 96)  # one window for a 96³ scan: 3x faster than 64³ windows, same output
# the 8 mirrorings of a (B, C, X, Y, Z) volume, in complementary pairs: any even-sized prefix is balanced
FLIPS = ((), (2, 3, 4), (2,), (3, 4), (3,), (2, 4), (4,), (2, 3))


def fit_window(n: int, longest: int, overlap: float = 0.25) -> int:
    """Window length (voxels) along an axis of ``n`` voxels: the whole axis up to ``longest``, else the
    shortest window that covers the axis with the fewest windows of at most ``longest`` at ``overlap``.

    Windows sized to the scan do less overlapping work than fixed ones: a 197 x 233 x 189 volume takes
    2 x 3 x 2 windows of 113 x 94 x 108 (14 M voxels) instead of 27 windows of 96³ (24 M voxels).
    """
    k = 1  # windows along the axis
    while (size := math.ceil(n / (1 + (k - 1) * (1 - overlap)))) > longest:
        k += 1
    return size


def check_flips(n: int) -> int:
    """``n`` if it is a valid flip-ensemble size (1-8), else a :class:`ConfigError` naming ``flips``."""
    if not 1 <= n <= len(FLIPS):
        raise ConfigError(f"key 'flips': must be 1-{len(FLIPS)}, got {n}")
    return n


def flip_ensemble(predictor: Callable[[torch.Tensor], torch.Tensor], n: int) -> Callable[[torch.Tensor], torch.Tensor]:
    """``predictor`` averaged over ``n`` (1-8) mirrored copies of its input (test-time ensembling).

    A denoiser's errors differ between mirrored inputs while the anatomy does not, so the mean of
    ``n`` flipped predictions (each flipped back) lowers the error at ``n`` times the cost.
    Shapes: ``(B, C, X, Y, Z)`` in and out.
    """
    check_flips(n)

    def predict(x: torch.Tensor) -> torch.Tensor:
        out = predictor(x)
        for dims in FLIPS[1:n]:
            out = out + predictor(x.flip(dims)).flip(dims)
        return out / n

    return predict


def sliding_window(
    predictor: Callable[..., torch.Tensor],
    volume: torch.Tensor,
    *,
    roi: tuple[int, int, int] = DEFAULT_ROI,
    overlap: float = 0.25,
    device: str | torch.device = "cpu",
    progress: Callable[[int, int], None] | None = None,
    **kwargs,
) -> torch.Tensor:
    """Run ``predictor(window, **kwargs)`` over ``volume`` ``(B, C, X, Y, Z)`` window by window.

    Args:
        roi: window size in voxels; dimensions larger than the volume are clipped to it (MONAI pads).
        overlap: fraction of each window shared with its neighbours, blended with Gaussian weights.
        device: where the network runs (``"cuda"`` when present); the blend buffer stays on CPU.
        progress: ``progress(windows_done, windows_total)`` after each window.

    Returns:
        ``(B, C_out, X, Y, Z)`` float32 on CPU.
    """
    roi = tuple(int(min(r, s)) if s >= 16 else int(r) for r, s in zip(roi, volume.shape[2:]))
    inferer = SlidingWindowInferer(
        roi_size=roi,
        sw_batch_size=1,
        overlap=overlap,
        mode="gaussian",
        sw_device=torch.device(device),
        device=torch.device("cpu"),
        progress=False,
    )
    if progress is not None:
        size = [max(s, r) for s, r in zip(volume.shape[2:], roi)]  # MONAI pads up to the window
        interval = [r if r == s else max(int(r * (1 - overlap)), 1) for r, s in zip(roi, size)]
        total = len(dense_patch_slices(size, roi, interval)) * volume.shape[0]
        done = 0

        def counted(window: torch.Tensor, **kw) -> torch.Tensor:
            nonlocal done
            out = predictor(window, **kw)
            done += window.shape[0]
            progress(done, total)
            return out
    with torch.inference_mode():
        return inferer(volume, predictor if progress is None else counted, **kwargs).float()
