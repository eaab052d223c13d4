"""Training volumes for the shipped enhancement networks, sampled on any torch device.

All built in, nothing downloaded:

- **MR**: the MNI152 2009 T1 at 1 mm and 2 mm (:func:`medgen.data.mni152`, scaled to ``[0, 1]``) with
  its CSF/GM/WM probability maps, from which :func:`random_contrast` makes T1 (random gamma) and
  random synthetic contrasts (T2-, PD-, FLAIR-like tissue orderings mixed with the real T1 texture);
- **CT**: noise-free procedural phantoms (:func:`medgen.data.ct_phantom`) over the default
  384 x 384 x 288 mm field of view at 2-4.5 mm voxels, normalised as inference normalises a scan
  (``(x - p0.5) / (p99.5 - p0.5)``).

Volumes live on the training device as float32 tensors ``(X, Y, Z)`` (MR: ``(4, X, Y, Z)`` = T1,
CSF, GM, WM); crops are indexed there, so a GPU is never starved by a CPU data loader.
"""

from __future__ import annotations

import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass

import numpy as np
import torch


@dataclass
class Source:
    """One training volume on a device: ``channels`` ``(C, X, Y, Z)`` and its crop corners ``starts`` ``(N, 3)``."""

    kind: str  # "mr" (channels T1, CSF, GM, WM) or "ct" (one normalised channel)
    channels: torch.Tensor
    starts: torch.Tensor


def crop_starts(mask: np.ndarray, crop: tuple[int, int, int], fill: float) -> np.ndarray:
    """Corners ``(N, 3)`` of every ``crop`` window of which more than ``fill`` lies inside ``mask``.

    Window sums come from a summed-volume table (linear time in the voxels).
    """
    s = np.pad(mask.astype(np.int64).cumsum(0).cumsum(1).cumsum(2), ((1, 0),) * 3)
    a, b, c = crop
    win = (s[a:, b:, c:] - s[:-a, b:, c:] - s[a:, :-b, c:] - s[a:, b:, :-c]
           + s[:-a, :-b, c:] + s[:-a, b:, :-c] + s[a:, :-b, :-c] - s[:-a, :-b, :-c])
    starts = np.argwhere(win > fill * a * b * c)
    return starts if len(starts) else np.zeros((1, 3), np.int64)


def _phantom(args: tuple[int, float, float]) -> np.ndarray:
    from medgen.data.phantom import ct_phantom
    from medgen.enhance.denoise import Normalisation

    seed, inplane, through = args
    spacing = (inplane, inplane, through)
    shape = tuple(int(round(e / s)) for e, s in zip((384.0, 384.0, 288.0), spacing))
    hu = ct_phantom(seed=seed, shape=shape, spacing=spacing, noise=0)["image"][0].numpy()
    return Normalisation.of(hu).forward(hu)


def load_sources(crop: tuple[int, int, int], *, ct: int = 10, device: str = "cpu",
                 workers: int = 1) -> list[Source]:
    """MNI152 at 1 and 2 mm and ``ct`` CT phantoms (seeds 1000..), with the corners of useful crops.

    MR crops hold > 20 % brain, CT crops > 30 % body. ``workers`` processes draw the phantoms.
    """
    from medgen.data.mni152 import mni152

    out = []
    for res in (1, 2):
        t = mni152(res)
        chans = np.stack([t[k][0].numpy().astype(np.float32) for k in ("image", "csf", "gm", "wm")])
        chans[0] /= 255.0
        if any(s < c for s, c in zip(chans.shape[1:], crop)):
            continue
        mask = chans[1:].sum(0) > 0.5
        out.append(Source("mr", torch.from_numpy(chans).to(device),
                          torch.from_numpy(crop_starts(mask, crop, 0.2))))
    jobs = [(1000 + i, 2.0 + 2.5 * i / max(ct - 1, 1), 2.0 + 2.5 * ((7 * i) % ct) / max(ct - 1, 1)) for i in range(ct)]
    if workers > 1:  # spawned, not forked: a fork of a process whose torch threads are up can hang
        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
            phantoms = list(pool.map(_phantom, jobs))
    else:
        phantoms = [_phantom(j) for j in jobs]
    for img in phantoms:
        if any(s < c for s, c in zip(img.shape, crop)):
            continue
        body = img > np.percentile(img, 30)
        out.append(Source("ct", torch.from_numpy(img[None]).to(device), torch.from_numpy(crop_starts(body, crop, 0.3))))
    return out


def random_contrast(chans: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """One MR crop ``(4, ...)`` (T1, CSF, GM, WM) → ``(...)`` in a random contrast, brightest tissue ~1.

    40 %: the T1 with a gamma in ``[0.7, 1.4]``; 60 %: random CSF/GM/WM intensities mixed with the T1
    texture (alpha in ``[0.6, 1]``). Then a global scale in ``[0.8, 1.2]``.
    """
    u = torch.rand(6, generator=gen).tolist()
    t1 = chans[0]
    if u[0] < 0.4:
        img = t1.clamp_min(0) ** (0.7 + 0.7 * u[1])
    else:
        mu = torch.rand(3, generator=gen) * 0.95 + 0.05
        mu = (mu / mu.max()).to(chans.device)
        synth = torch.einsum("c,c...->...", mu, chans[1:])
        alpha = 0.6 + 0.4 * u[2]
        img = alpha * synth + (1 - alpha) * t1
    return img * (0.8 + 0.4 * u[3])


def random_crop(src: Source, crop: tuple[int, int, int], gen: torch.Generator) -> torch.Tensor:
    """A random useful ``crop`` window of ``src``: ``(C, *crop)`` on the source's device."""
    i = int(torch.randint(len(src.starts), (1,), generator=gen))
    x, y, z = src.starts[i].tolist()
    return src.channels[:, x : x + crop[0], y : y + crop[1], z : z + crop[2]]


def flip_and_permute(img: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Random flips and axis order of a cubic crop ``(..., X, Y, Z)``: anatomy has no preferred direction."""
    flips = [d for d in (-3, -2, -1) if torch.rand(1, generator=gen).item() < 0.5]
    img = img.flip(flips) if flips else img
    perm = torch.randperm(3, generator=gen).tolist()
    lead = list(range(img.ndim - 3))
    return img.permute(*lead, *(len(lead) + p for p in perm))
