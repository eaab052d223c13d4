"""Diffusion samplers: short loops over a denoiser, one per scheduler (MONAI schedulers).

- ``ddpm``: ancestral DDPM, one network call per training timestep (slow, the reference).
- ``ddim``: deterministic DDIM on a strided subset of timesteps (same epsilon model, fewer steps).
- ``rflow``: Euler integration of the rectified-flow ODE (models trained with ``objective: rflow``).

A model trained for epsilon prediction is sampled with ``ddpm``/``ddim``; a velocity model with
``rflow``. Classifier-free guidance mixes conditional and unconditional predictions:
``out = uncond + guidance * (cond - uncond)``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from monai.networks.schedulers import DDIMScheduler, DDPMScheduler, RFlowScheduler

from medgen.errors import ConfigError
from medgen.models.config import DiffusionConfig

SAMPLERS = {"epsilon": ("ddpm", "ddim"), "rflow": ("rflow",)}


def training_scheduler(cfg: DiffusionConfig):
    """The scheduler whose ``add_noise`` defines the training objective of ``cfg``."""
    if cfg.objective == "rflow":
        return RFlowScheduler(num_train_timesteps=cfg.num_train_timesteps, use_discrete_timesteps=True,
                              sample_method="logit-normal")
    return epsilon_scheduler(cfg, "ddpm")


def epsilon_scheduler(cfg: DiffusionConfig, kind: str) -> DDPMScheduler | DDIMScheduler:
    """MONAI's DDPM or DDIM scheduler for an epsilon model of ``cfg``. Its x0 estimates are clipped to
    the model range [-1, 1], except in the residual space of a ``mean_image`` model (other bounds)."""
    cls = DDPMScheduler if kind == "ddpm" else DDIMScheduler
    return cls(num_train_timesteps=cfg.num_train_timesteps, schedule=cfg.schedule, clip_sample=not cfg.mean_image)


def default_sampler(cfg: DiffusionConfig) -> tuple[str, int]:
    """The sampler and number of steps to use when the user names none."""
    return ("rflow", 10) if cfg.objective == "rflow" else ("ddim", 50)


def check_sampler(cfg: DiffusionConfig, sampler: str) -> None:
    """Refuse a sampler inconsistent with the model's training objective."""
    if sampler not in SAMPLERS[cfg.objective]:
        raise ConfigError(
            f"key 'sampler': '{sampler}' cannot sample a model trained with objective '{cfg.objective}' "
            f"(use {' or '.join(SAMPLERS[cfg.objective])})"
        )


def guided(net: Callable, cond: torch.Tensor | None, guidance: float) -> Callable:
    """Denoiser ``(x, t) -> prediction`` with classifier-free guidance when ``cond`` is given."""
    if cond is None or guidance == 1.0:
        return lambda x, t: net(x, t, cond)
    return lambda x, t: net(x, t, None) + guidance * (net(x, t, cond) - net(x, t, None))


@torch.no_grad()
def sample(
    net: Callable, cfg: DiffusionConfig, shape: Sequence[int], *, sampler: str = "ddim", steps: int = 50,
    cond: torch.Tensor | None = None, guidance: float = 1.0,
    generator: torch.Generator | Sequence[torch.Generator] | None = None,
    device: torch.device | str = "cpu", progress: Callable[[int, int], None] | None = None,
) -> torch.Tensor:
    """Draw samples ``(B, C, *size)`` (the network's space: model range, about [-1, 1], or the
    residual space of a ``mean_image`` model, which the caller maps back) from noise of ``shape``.

    Args:
        net: ``net(x, t, cond)`` → epsilon or velocity.
        sampler: ``"ddpm"`` (``steps`` ignored: all training timesteps), ``"ddim"`` or ``"rflow"``.
        cond: ``(B, cond_dim)`` condition vector, or None (unconditional).
        generator: CPU generator for the initial noise and DDPM's per-step noise; or one generator
            per batch row, so that row ``i`` is the same whatever else is in the batch.
    """
    check_sampler(cfg, sampler)
    denoise = guided(net, cond, guidance)
    rows = list(generator) if isinstance(generator, Sequence) else None
    if rows is not None:
        x = torch.cat([torch.randn((1, *shape[1:]), generator=g) for g in rows]).to(device)
    else:
        x = torch.randn(tuple(shape), generator=generator).to(device)
    batch = x.shape[0]
    if sampler == "rflow":
        sched = RFlowScheduler(num_train_timesteps=cfg.num_train_timesteps, use_discrete_timesteps=False)
        sched.set_timesteps(steps, device=device)
        timesteps = list(sched.timesteps)
        for i, t in enumerate(timesteps):
            nxt = timesteps[i + 1] if i + 1 < len(timesteps) else 0
            v = denoise(x, torch.full((batch,), float(t), device=device))
            x, _ = sched.step(v, t, x, nxt)
            if progress:
                progress(i + 1, len(timesteps))
        return x
    sched = epsilon_scheduler(cfg, sampler)
    sched.set_timesteps(cfg.num_train_timesteps if sampler == "ddpm" else steps, device=device)
    timesteps = list(sched.timesteps)
    for i, t in enumerate(timesteps):
        eps = denoise(x, torch.full((batch,), int(t), device=device, dtype=torch.long))
        if sampler == "ddpm" and rows is not None:
            x = torch.cat([sched.step(eps[i : i + 1], int(t), x[i : i + 1], generator=g)[0]
                           for i, g in enumerate(rows)])
        elif sampler == "ddpm":
            x, _ = sched.step(eps, int(t), x, generator=generator)
        else:
            x, _ = sched.step(eps, int(t), x)
        if progress:
            progress(i + 1, len(timesteps))
    return x
