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


def resolve_sampler(cfg: DiffusionConfig, sampler: str | None, steps: int | None) -> tuple[str, int]:
    """The sampler and step count to run: the user's choice, else the model's default (DDPM runs every
    training timestep); a sampler that cannot sample this model is refused."""
    default, default_steps = default_sampler(cfg)
    sampler = sampler or default
    check_sampler(cfg, sampler)
    if steps is not None and not 1 <= steps <= cfg.num_train_timesteps:
        raise ConfigError(f"key 'steps': must be between 1 and the model's {cfg.num_train_timesteps} training "
                          f"timesteps, got {steps}")
    return sampler, steps or (cfg.num_train_timesteps if sampler == "ddpm" else default_steps)


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


def with_labels(net: Callable, labels: torch.Tensor | None) -> Callable:
    """``net(x, t, cond)`` with a one-hot label map ``(B, K, *size)`` bound (label-conditioned models)."""
    if labels is None:
        return net
    return lambda x, t, cond=None: net(x, t, cond, labels=labels)


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
    if sampler == "rflow":
        sched = RFlowScheduler(num_train_timesteps=cfg.num_train_timesteps, use_discrete_timesteps=False)
        sched.set_timesteps(steps, device=device)
        return integrate(denoise, sched, list(sched.timesteps), x, rflow=True, progress=progress)
    sched = epsilon_scheduler(cfg, sampler)
    sched.set_timesteps(cfg.num_train_timesteps if sampler == "ddpm" else steps, device=device)
    timesteps = list(sched.timesteps)
    if sampler == "ddim":
        return integrate(denoise, sched, timesteps, x, rflow=False, progress=progress)
    batch = x.shape[0]
    for i, t in enumerate(timesteps):  # DDPM: stochastic steps, one generator per row when given
        eps = denoise(x, torch.full((batch,), int(t), device=device, dtype=torch.long))
        if rows is not None:
            x = torch.cat([sched.step(eps[i : i + 1], int(t), x[i : i + 1], generator=g)[0]
                           for i, g in enumerate(rows)])
        else:
            x, _ = sched.step(eps, int(t), x, generator=generator)
        if progress:
            progress(i + 1, len(timesteps))
    return x


@torch.no_grad()
def integrate(denoise: Callable, sched, timesteps: Sequence, x: torch.Tensor, rflow: bool,
              progress: Callable[[int, int], None] | None = None) -> torch.Tensor:
    """Run a deterministic sampler (RFlow Euler or DDIM ``sched``, timesteps already set) from the
    state ``x`` ``(B, C, *size)`` at ``timesteps[0]`` down to 0; ``denoise(x, t)`` → velocity/epsilon."""
    batch, device = x.shape[0], x.device
    for i, t in enumerate(timesteps):
        if rflow:
            nxt = timesteps[i + 1] if i + 1 < len(timesteps) else 0
            x, _ = sched.step(denoise(x, torch.full((batch,), float(t), device=device)), t, x, nxt)
        else:
            eps = denoise(x, torch.full((batch,), int(t), device=device, dtype=torch.long))
            x, _ = sched.step(eps, int(t), x)
        if progress:
            progress(i + 1, len(timesteps))
    return x


@torch.no_grad()
def inpaint(
    net: Callable, cfg: DiffusionConfig, known: torch.Tensor, mask: torch.Tensor, *, sampler: str = "ddpm",
    steps: int = 50, generator: torch.Generator | None = None, progress: Callable[[int, int], None] | None = None,
) -> torch.Tensor:
    """Regenerate the ``mask`` region of ``known`` and keep the rest (RePaint, Lugmayr et al. 2022,
    without resampling jumps): after every reverse step the voxels outside the mask are replaced by
    ``known`` noised to the same time, so the generated part grows out of, and blends into, its
    surroundings.

    Args:
        net: ``net(x, t, cond)`` (bind labels with :func:`with_labels` for a label-conditioned model).
        known: ``(B, C, *size)`` in the network's space (model range, or residual space).
        mask: ``(B, 1 or C, *size)``, 1 where to generate, 0 where ``known`` is kept (soft values blend).
        sampler, steps: as :func:`sample` (``ddpm`` runs all training timesteps).

    Returns:
        ``(B, C, *size)`` in the network's space; equal to ``known`` where ``mask`` is 0.
    """
    check_sampler(cfg, sampler)
    device = known.device
    mask = mask.to(known.dtype).expand_as(known)

    def noise() -> torch.Tensor:
        return torch.randn(known.shape, generator=generator).to(device)

    batch = known.shape[0]
    if sampler == "rflow":
        sched = RFlowScheduler(num_train_timesteps=cfg.num_train_timesteps, use_discrete_timesteps=False)
        sched.set_timesteps(steps, device=device)
        times = list(sched.timesteps)
        x = mask * noise() + (1 - mask) * sched.add_noise(known, noise(), times[0].reshape(1))
        for i, t in enumerate(times):
            nxt = times[i + 1] if i + 1 < len(times) else 0
            x, _ = sched.step(net(x, torch.full((batch,), float(t), device=device), None), t, x, nxt)
            if i + 1 < len(times):
                x = mask * x + (1 - mask) * sched.add_noise(known, noise(), times[i + 1].reshape(1))
            if progress:
                progress(i + 1, len(times))
        return mask * x + (1 - mask) * known
    sched = epsilon_scheduler(cfg, sampler)
    sched.set_timesteps(cfg.num_train_timesteps if sampler == "ddpm" else steps, device=device)
    times = [int(t) for t in sched.timesteps]
    x = mask * noise() + (1 - mask) * sched.add_noise(known, noise(), torch.tensor([times[0]], device=device))
    for i, t in enumerate(times):
        eps = net(x, torch.full((batch,), t, device=device, dtype=torch.long), None)
        x, _ = sched.step(eps, t, x, generator=generator) if sampler == "ddpm" else sched.step(eps, t, x)
        if i + 1 < len(times):
            x = mask * x + (1 - mask) * sched.add_noise(known, noise(), torch.tensor([times[i + 1]], device=device))
        if progress:
            progress(i + 1, len(times))
    return mask * x + (1 - mask) * known
