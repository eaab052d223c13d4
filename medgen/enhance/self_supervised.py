"""Neighbor2Neighbor: train or fine-tune a denoiser on the noisy scan itself, with no clean target.

Physics: two voxels of the same 2x2x2 cell see (almost) the same anatomy but independent noise. Split
the scan into two half-resolution volumes ``g1(y)``, ``g2(y)`` by picking, in every cell, one random
voxel and one of its face neighbours; a network that predicts ``g2`` from ``g1`` cannot predict the
noise, so it learns the signal (Huang et al., CVPR 2021, here in 3D). The regulariser
``|f(g1) - g2 - (g1(f(y)) - g2(f(y)))|^2`` closes the gap caused by the two voxels' half-voxel shift.

Assumes noise independent between neighbouring voxels (MR magnitude, photon-counting); strongly
correlated noise (e.g. FBP-reconstructed CT) is partly learned as signal.

Example:
    >>> net = Denoiser3d()                                              # doctest: +SKIP
    >>> fit_neighbor2neighbor(net, noisy_norm, sigma_norm, steps=200, seed=0)   # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from medgen.models.enhancers import Denoiser3d
from medgen.training.loop import Phase, cosine, fit


def neighbor_indices(shape: tuple[int, ...], generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Random voxel picks for a Neighbor2Neighbor split of a ``(B, C, X, Y, Z)`` volume (even sizes).

    Returns:
        ``first, second``: ``(B, 1, X/2, Y/2, Z/2)`` int64 indices in ``0..7`` of a voxel inside each
        2x2x2 cell and of one of its three face neighbours in the cell.
    """
    b, _, x, y, z = shape
    cells = (b, 1, x // 2, y // 2, z // 2)
    first = torch.randint(0, 8, cells, generator=generator)
    second = torch.bitwise_xor(first, 2 ** torch.randint(0, 3, cells, generator=generator))
    return first, second


def subsample(volume: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """The half-resolution volume ``(B, C, X/2, Y/2, Z/2)`` taking voxel ``index`` of every 2x2x2 cell."""
    b, c, x, y, z = volume.shape
    cells = volume.reshape(b, c, x // 2, 2, y // 2, 2, z // 2, 2).permute(0, 1, 2, 4, 6, 3, 5, 7)
    cells = cells.reshape(b, c, x // 2, y // 2, z // 2, 8)
    return cells.gather(-1, index.expand(b, c, *index.shape[2:]).unsqueeze(-1)).squeeze(-1)


def random_crops(
    volume: torch.Tensor, size: int, batch: int, generator: torch.Generator
) -> torch.Tensor:
    """``batch`` random ``size``³ crops of ``volume`` ``(1, C, X, Y, Z)`` (sizes clipped to even)."""
    spatial = volume.shape[2:]
    sizes = [min(size, s) - min(size, s) % 2 for s in spatial]
    out = []
    for _ in range(batch):
        starts = [int(torch.randint(0, s - k + 1, (1,), generator=generator)) for s, k in zip(spatial, sizes)]
        sl = tuple(slice(a, a + k) for a, k in zip(starts, sizes))
        out.append(volume[(0, slice(None), *sl)])
    return torch.stack(out)


def fit_neighbor2neighbor(
    net: Denoiser3d,
    noisy: torch.Tensor,
    sigma: float,
    *,
    steps: int = 200,
    crop: int = 32,
    batch: int = 4,
    lr: float = 1e-3,
    gamma: float = 1.0,
    seed: int = 0,
    device: str | torch.device = "cpu",
    time_limit_s: float | None = None,
    callback: Callable[[int, float], None] | None = None,
) -> list[float]:
    """Fine-tune (or train from scratch) ``net`` on ``noisy`` with the Neighbor2Neighbor loss.

    Args:
        noisy: ``(1, 1, X, Y, Z)`` normalised scan (see :func:`medgen.enhance.denoise.normalise`).
        sigma: noise std in the same normalised units (the network's conditioning input).
        steps: optimiser steps on ``batch`` random ``crop``³ crops (Adam, cosine LR to 5 %, through
            :func:`medgen.training.loop.fit`); ``time_limit_s`` stops earlier, the LR following time.
        gamma: weight of the regulariser (0 gives plain Noise2Noise on the sub-volumes).
        callback: called as ``callback(step, loss)`` after every step (progress bars).

    Returns:
        The loss of every step. ``net`` is left in eval mode on ``device``.
    """
    generator = torch.Generator().manual_seed(seed)

    def loss_at(step: int) -> torch.Tensor:
        y = random_crops(noisy, crop, batch, generator)
        first, second = neighbor_indices(tuple(y.shape), generator)
        y, first, second = y.to(device), first.to(device), second.to(device)
        g1, g2 = subsample(y, first), subsample(y, second)
        with torch.no_grad():
            full = net(y, sigma)
        f1, f2 = subsample(full, first), subsample(full, second)
        out = net(g1, sigma)
        return torch.mean((out - g2) ** 2) + gamma * torch.mean((out - g2 - (f1 - f2)) ** 2)

    result = fit([Phase(net.to(device), loss_at, lr=lr)], steps=steps, schedule=cosine(final=0.05),
                 time_budget_s=time_limit_s, device=device, callback=callback)
    return result.losses["loss"]

