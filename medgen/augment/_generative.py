"""Small pure functions shared by the generative transforms: model space in and out, SDEdit."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from monai.data import MetaTensor
from monai.networks.schedulers import RFlowScheduler

from medgen.errors import ConfigError, DataError
from medgen.io.meta import affine_of, spacing_from_affine
from medgen.models.sampling import epsilon_scheduler, integrate
from medgen.models.shapes import fit

SPACING_RTOL = 0.1
"""How far (relative) a scan's voxel size may be from the model's before a generative transform refuses it."""


def check_compatible(model: Any, img: torch.Tensor, what: str = "image") -> None:
    """Refuse, in one line, a scan ``img`` on another voxel size or of another modality than the
    training data of ``model`` (a model draws anatomy at its own scale: a 1 mm label map fed to a
    3 mm model would be rendered as a head three times too large, and cropped).

    Plain tensors carry no geometry and pass; so does a model folder without a reference affine.

    Raises:
        DataError: naming the model, both voxel sizes (mm) or both modalities, and what to do.
    """
    if not isinstance(img, MetaTensor):
        return
    ref = getattr(model, "reference", None) or {}
    if "affine" in ref:
        want = spacing_from_affine(np.asarray(ref["affine"]))
        got = spacing_from_affine(affine_of(img))
        if len(got) == len(want) and not np.allclose(got, want, rtol=SPACING_RTOL):
            raise DataError(f"model '{model.name}' was trained on {_mm(want)} mm voxels but this {what} has "
                            f"{_mm(got)} mm; resample it first (MONAI Spacingd) or use a model of that grid")
    theirs, ours = str(img.meta.get("modality") or "").upper(), str(ref.get("modality") or "").upper()
    if theirs and ours and theirs != ours:
        raise DataError(f"model '{model.name}' was trained on {ours} scans but this {what} is {theirs}")


def _mm(spacing: tuple[float, ...]) -> str:
    return " x ".join(f"{v:g}" for v in np.round(spacing, 2))


def to_model_space(model: Any, img: torch.Tensor) -> torch.Tensor:
    """``(C, X, Y, Z)`` in data units → ``(1, C, *model size)`` in [-1, 1] on the model's device."""
    x = model.normalization.to_model(torch.as_tensor(img).float().cpu())
    x = torch.as_tensor(fit(x, model.config.size, pad_value=-1.0))
    return x[None].to(next(model.network.parameters()).device)


def from_model_space(model: Any, y: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
    """``(1, C, *model size)`` in [-1, 1] → ``(C, *shape)`` in data units on the CPU."""
    units = model.normalization.to_units(y[0].float().cpu())
    lowest = float(model.normalization.to_units(torch.tensor(-1.0)))
    return torch.as_tensor(fit(units, shape, pad_value=lowest))


def one_hot_labels(label: torch.Tensor, classes: int, size: list[int]) -> torch.Tensor:
    """Integer label map ``(1, X, Y, Z)`` → one-hot ``(1, classes, *size)`` float (padded as background)."""
    lab = torch.as_tensor(fit(torch.as_tensor(label).float().cpu(), size, pad_value=0.0)).round().long()[0]
    onehot = torch.nn.functional.one_hot(lab.clamp(0, classes - 1), classes).movedim(-1, 0)
    return onehot[None].float()


@torch.no_grad()
def sdedit(model: Any, x0: torch.Tensor, strength: float, steps: int, generator: torch.Generator) -> torch.Tensor:
    """SDEdit: noise ``x0`` ``(1, C, *size)`` (model range) to ``strength`` in (0, 1], then denoise back.

    ``strength`` is the fraction of the diffusion time travelled: 0 returns ``x0``, 1 samples afresh.
    ``steps`` is the number of sampler steps over the whole time range (DDIM for epsilon models,
    the RFlow Euler solver for rectified-flow models); only the last ``strength`` share is run.
    A latent diffusion model edits the VAE's latent of ``x0`` and decodes the result.
    """
    cfg = model.config
    if cfg.family not in ("diffusion", "ldm"):
        raise ConfigError(f"model '{model.name}': SDEdit variation needs a diffusion model (pixel or latent), "
                          f"not family '{cfg.family}'")
    net = model.network
    latent = cfg.family == "ldm"
    z0 = net.to_residual(model.vae.encode(x0) if latent else x0)
    y = net.from_residual(_renoise(net, cfg.diffusion, z0, strength, steps, generator))
    return model.vae.decode(y) if latent else y


def _renoise(net: Any, d: Any, x0: torch.Tensor, strength: float, steps: int,
             generator: torch.Generator) -> torch.Tensor:
    """The SDEdit core in the space the network diffuses: noise ``x0`` to ``strength``, integrate back."""
    device = x0.device
    noise = torch.randn(x0.shape, generator=generator).to(device)
    t_start = strength * d.num_train_timesteps
    if d.objective == "rflow":
        sched = RFlowScheduler(num_train_timesteps=d.num_train_timesteps, use_discrete_timesteps=False)
        sched.set_timesteps(steps, device=device)
        times = [t for t in sched.timesteps if float(t) <= t_start]
        if not times:
            return x0
        x = sched.add_noise(x0, noise, times[0].reshape(1))
        return integrate(lambda v, t: net(v, t, None), sched, times, x, rflow=True)
    sched = epsilon_scheduler(d, "ddim")
    sched.set_timesteps(steps, device=device)
    times = [int(t) for t in sched.timesteps if int(t) <= t_start]
    if not times:
        return x0
    x = sched.add_noise(x0, noise, torch.tensor([times[0]], device=device))
    return integrate(lambda v, t: net(v, t, None), sched, times, x, rflow=False)
