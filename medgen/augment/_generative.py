"""Small pure functions shared by the generative transforms: model space in and out, SDEdit."""

from __future__ import annotations

from typing import Any

import torch
from monai.networks.schedulers import RFlowScheduler

from medgen.errors import ConfigError
from medgen.models.sampling import epsilon_scheduler, integrate
from medgen.models.shapes import fit


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
    """
    cfg = model.config
    if cfg.family != "diffusion":
        raise ConfigError(f"model '{model.name}': SDEdit variation needs a pixel-space diffusion model, "
                          f"not family '{cfg.family}'")
    d, net, device = cfg.diffusion, model.network, x0.device
    x0 = net.to_residual(x0)
    noise = torch.randn(x0.shape, generator=generator).to(device)
    t_start = strength * d.num_train_timesteps
    if d.objective == "rflow":
        sched = RFlowScheduler(num_train_timesteps=d.num_train_timesteps, use_discrete_timesteps=False)
        sched.set_timesteps(steps, device=device)
        times = [t for t in sched.timesteps if float(t) <= t_start]
        if not times:
            return net.from_residual(x0)
        x = sched.add_noise(x0, noise, times[0].reshape(1))
        return net.from_residual(integrate(lambda v, t: net(v, t, None), sched, times, x, rflow=True))
    sched = epsilon_scheduler(d, "ddim")
    sched.set_timesteps(steps, device=device)
    times = [int(t) for t in sched.timesteps if int(t) <= t_start]
    if not times:
        return net.from_residual(x0)
    x = sched.add_noise(x0, noise, torch.tensor([times[0]], device=device))
    return net.from_residual(integrate(lambda v, t: net(v, t, None), sched, times, x, rflow=False))
