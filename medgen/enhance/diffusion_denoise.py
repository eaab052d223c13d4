"""Denoising by posterior sampling with a model-zoo diffusion model, with a per-voxel uncertainty map.

A diffusion model trained on clean scans (``medgen train``, family ``diffusion``, epsilon or
rectified-flow objective) knows ``x_t = a(t) x + b(t) eps`` for every time ``t``: ``a = sqrt(abar_t)``,
``b = sqrt(1 - abar_t)`` (epsilon) or ``a = 1 - t/T``, ``b = t/T`` (rectified flow). A scan with
Gaussian noise of std ``sigma`` (model units) is ``y = x + sigma n``, so ``a(t) y`` *is* a diffusion
state wherever ``b(t) = a(t) sigma``. Each posterior sample takes the first sampler time ``t'`` whose
noise ``b/a`` exceeds ``sigma (1 + extra)``, sets ``x_t' = a(t') y + sqrt(b(t')^2 - a(t')^2 sigma^2) eps``
(fresh ``eps`` per sample: the posterior's spread) and runs the deterministic sampler (DDIM or the
RFlow Euler solver) from ``t'`` to 0. The mean of the samples is the denoised scan, their standard
deviation the uncertainty, both in the scan's units.

Scans larger than the model's volume are covered by sliding windows of the model's size (MONAI
``SlidingWindowInferer``) unless the model diffuses around a mean image (``mean_image``), which ties
it to its own grid: then the scan must have the model's size. Only few sampler steps lie below a
moderate noise level, so a sample costs a few network passes: a GPU makes it quick.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from monai.networks.schedulers import RFlowScheduler

from medgen.enhance.inference import sliding_window
from medgen.enhance.noise import estimate_sigma
from medgen.enhance.pretrained import DEFAULT_DENOISER
from medgen.errors import ConfigError
from medgen.io.meta import like
from medgen.io.provenance import mark
from medgen.models.sampling import epsilon_scheduler, integrate


def _check(model: Any, shape: tuple[int, ...]) -> None:
    cfg = model.config
    if cfg.family != "diffusion":
        raise ConfigError(f"key 'model': '{model.name}' is a {cfg.family} model; diffusion denoising needs a "
                          "pixel-space diffusion model (medgen train, family: diffusion)")
    if cfg.diffusion.label_classes or model.network.cond_dim:
        raise ConfigError(f"key 'model': '{model.name}' is conditional; diffusion denoising needs an "
                          "unconditional diffusion model")
    if cfg.diffusion.mean_image and tuple(shape) != tuple(cfg.size):
        raise ConfigError(f"key 'model': '{model.name}' diffuses around its mean image of size "
                          f"{tuple(cfg.size)}; the scan is {tuple(shape)} (resample it to the model's grid)")


def _schedule(model: Any, steps: int, device: torch.device) -> tuple[Any, list, Any]:
    """``(scheduler, times high→low, coefficients(t) -> (a, b))`` of the model's sampler."""
    d = model.config.diffusion
    if d.objective == "rflow":
        sched = RFlowScheduler(num_train_timesteps=d.num_train_timesteps, use_discrete_timesteps=False)
        sched.set_timesteps(steps, device=device)
        return sched, list(sched.timesteps), lambda t: (1 - float(t) / d.num_train_timesteps,
                                                          float(t) / d.num_train_timesteps)
    sched = epsilon_scheduler(d, "ddim")
    sched.set_timesteps(steps, device=device)
    abar = sched.alphas_cumprod
    return sched, [int(t) for t in sched.timesteps], lambda t: (float(abar[int(t)].sqrt()),
                                                                 float((1 - abar[int(t)]).sqrt()))


@torch.no_grad()
def posterior_samples(model: Any, y: torch.Tensor, sigma: float, *, samples: int, steps: int, extra: float,
                      generator: torch.Generator) -> torch.Tensor:
    """``samples`` posterior draws ``(S, 1, C, *size)`` of the clean image given ``y`` ``(1, C, *size)``,
    run as one batch of ``S``.

    ``y`` and ``sigma`` are in the space the network diffuses (model range, residual if ``mean_image``).
    """
    net, device = model.network, y.device
    sched, times, coef = _schedule(model, steps, device)
    level = sigma * (1 + extra)
    start = next((i for i in range(len(times) - 1, -1, -1) if coef(times[i])[1] >= level * coef(times[i])[0]), 0)
    times = times[start:]
    a, b = coef(times[0])
    # all draws in one batch: fresh eps per draw is the posterior's spread
    eps = torch.randn((samples, *y.shape[1:]), generator=generator).to(device)
    x = a * y + float(np.sqrt(max(b * b - (a * sigma) ** 2, 0.0))) * eps
    x = integrate(lambda v, t: net(v, t, None), sched, times, x, rflow=model.config.diffusion.objective == "rflow")
    return x[:, None]


def diffusion_denoise_array(
    x: np.ndarray, model: Any, *, sigma: float | None = None, samples: int = 8, steps: int = 50,
    extra: float = 0.25, seed: int = 0, device: str = "cpu",
) -> tuple[np.ndarray, np.ndarray, dict]:
    """Denoise one ``(X, Y, Z)`` volume in its units; returns ``(mean, std, info)`` float32 arrays.

    Args:
        model: a loaded diffusion model (:func:`medgen.load_model`).
        sigma: Gaussian noise std in the units of ``x`` (None: estimated).
        samples: posterior draws; steps: sampler steps over the whole time range (only those below
            the scan's noise level run); extra: how far above the scan's noise level each draw starts
            (its spread).
    """
    x = np.asarray(x, np.float32)
    _check(model, x.shape)
    if samples < 2:
        raise ConfigError("key 'samples': the uncertainty needs at least 2 posterior samples")
    sigma = float(estimate_sigma(x) if sigma is None else sigma)
    norm, net = model.normalization, model.network
    half = (norm.high - norm.low) / 2.0  # data units per model unit; no clipping: noise crosses the window
    scale = float(net.residual_scale) if model.config.diffusion.mean_image else 1.0
    sigma_r = sigma / half / scale
    gen = torch.Generator().manual_seed(seed)
    dev = torch.device(device)
    net.to(dev).eval()

    def predict(window: torch.Tensor) -> torch.Tensor:
        y = net.to_residual(window.to(dev) / half - 1.0 - norm.low / half)
        draws = net.from_residual(posterior_samples(model, y, sigma_r, samples=samples, steps=steps, extra=extra,
                                                    generator=gen).flatten(0, 1))
        units = (draws + 1.0) * half + norm.low
        return torch.cat([units.mean(0, keepdim=True), units.std(0, keepdim=True)], dim=1)

    volume = torch.from_numpy(x)[None, None]
    out = sliding_window(predict, volume, roi=tuple(model.config.size), device=device)[0].numpy()
    info = {"method": "diffusion", "model": model.name, "sigma": sigma, "samples": samples, "steps": steps,
            "noise": "gaussian"}
    return out[0].astype(np.float32), out[1].astype(np.float32), info


def diffusion_denoise(scan: torch.Tensor, model: str | Any, *, sigma: float | None = None, samples: int = 8,
                      steps: int = 50, seed: int = 0, device: str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """Denoise a scan ``(C, X, Y, Z)`` by posterior sampling; see the module docstring.

    Args:
        model: a model folder (``medgen train``) or a loaded diffusion model.

    Returns:
        ``(denoised, uncertainty)``: MetaTensors ``(C, X, Y, Z)`` float32 in the scan's units and geometry
        (posterior mean and standard deviation), each with provenance.
    """
    if isinstance(model, (str, Path)):
        if str(model) == DEFAULT_DENOISER:
            raise ConfigError("key 'model': --method diffusion needs a diffusion model folder (medgen train, "
                              "family: diffusion), not the shipped denoiser")
        from medgen.models.hub import load_generative

        model = load_generative(model, device=device)
    array = scan.detach().cpu().float().numpy()
    means, stds, info = [], [], {}
    for c in range(array.shape[0]):
        m, s, info = diffusion_denoise_array(array[c], model, sigma=sigma, samples=samples, steps=steps,
                                             seed=seed, device=device)
        means.append(m)
        stds.append(s)
    extra = {k: info[k] for k in ("sigma", "samples", "steps")}
    mean = mark(like(scan, np.stack(means)), "denoise", synthetic=False, model=info["model"], seed=seed,
                method="diffusion", noise="gaussian", **extra)
    unc = like(scan, np.stack(stds))
    unc = mark(unc, "denoise-uncertainty", synthetic=False, model=info["model"], seed=seed, method="diffusion",
               **extra)
    return mean, unc
