"""Draw samples from any model family: GAN (one pass), diffusion (DDPM/DDIM/RFlow), VAE (prior)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from monai.data import MetaTensor

from medgen.errors import ConfigError
from medgen.io.meta import make_scan
from medgen.io.provenance import mark
from medgen.models.hub import GenerativeModel
from medgen.models.sampling import check_sampler, default_sampler, sample
from medgen.models.shapes import fit


def parse_condition(text: str | None) -> torch.Tensor | Path | None:
    """``"0,1"`` → a condition vector; an existing file path → a label map (conditional GAN)."""
    if text is None or text == "":
        return None
    if Path(text).exists():
        return Path(text)
    try:
        return torch.tensor([float(v) for v in text.split(",")], dtype=torch.float32)
    except ValueError:
        raise ConfigError(f"key 'condition': '{text}' is neither numbers like 0,1 nor an existing label file") from None


@torch.no_grad()
def synthesize(
    model: GenerativeModel, num: int, *, seed: int = 0, sampler: str | None = None, steps: int | None = None,
    condition: torch.Tensor | Path | None = None, guidance: float = 1.0,
    progress: Callable[[int, int], None] | None = None,
) -> list[MetaTensor]:
    """``num`` synthetic volumes ``(C, X, Y, Z)`` (or ``(C, X, Y)`` for 2D models) in data units.

    Sample ``i`` is drawn with seed ``seed + i`` (the same seed gives the same volume).

    Args:
        sampler, steps: diffusion only: ``ddpm``/``ddim`` for epsilon models, ``rflow`` for
            rectified-flow models (default: DDIM-50 or RFlow-10).
        condition: diffusion: vector ``(cond_dim,)`` (class one-hot / scalars); conditional GAN:
            path of a label map (tissue labels, resampled/fitted to the model size).
        guidance: classifier-free guidance scale for conditional diffusion (1 = none).

    Returns:
        MetaTensors with the training data's affine, marked synthetic.
    """
    cfg = model.config
    device = next(model.network.parameters()).device
    family = cfg.family
    if family in ("diffusion", "ldm"):
        default, default_steps = default_sampler(cfg.diffusion)
        sampler = sampler or default
        steps = steps or (cfg.diffusion.num_train_timesteps if sampler == "ddpm" else default_steps)
        check_sampler(cfg.diffusion, sampler)
    else:
        sampler, steps = "single-pass" if family == "gan" else "prior", 1
    cond, labels = _conditions(model, condition, device)
    outputs = []
    for i in range(num):
        gen = torch.Generator().manual_seed(seed + i)
        x = _one(model, gen, sampler, steps, cond, labels, guidance, device)
        units = model.normalization.to_units(x[0].float().cpu())
        outputs.append(_as_scan(model, units, seed + i, sampler, steps, condition))
        if progress:
            progress(i + 1, num)
    return outputs


def _one(model, gen, sampler, steps, cond, labels, guidance, device) -> torch.Tensor:
    cfg, net = model.config, model.network
    if cfg.family == "gan":
        z = torch.randn(1, cfg.gan.latent_dim, generator=gen).to(device)
        return net(z, labels)
    if cfg.family == "vae":
        latent_shape = [1, cfg.vae.latent_channels, *[s // net.downsampling for s in cfg.size]]
        return net.net.decode(torch.randn(latent_shape, generator=gen).to(device))
    shape = [1, cfg.in_channels, *cfg.size]
    if cfg.family == "ldm":
        down = model.vae.downsampling
        shape = [1, model.vae_config.vae.latent_channels, *[s // down for s in cfg.size]]
    x = sample(net, cfg.diffusion, shape, sampler=sampler, steps=steps, cond=cond, guidance=guidance,
               generator=gen, device=device)
    return model.vae.decode(x) if cfg.family == "ldm" else x


def _conditions(model: GenerativeModel, condition, device) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    cfg = model.config
    if cfg.family == "gan" and cfg.gan.label_classes:
        if not isinstance(condition, Path):
            raise ConfigError("key 'condition': this GAN is conditioned on label maps; pass --condition LABELS.nii.gz")
        from medgen.io import load_scan

        lab = torch.as_tensor(fit(load_scan(condition).float(), cfg.size)).round().long()[0]
        onehot = torch.nn.functional.one_hot(lab.clamp(0, cfg.gan.label_classes - 1), cfg.gan.label_classes)
        return None, onehot.movedim(-1, 0)[None].float().to(device)
    if cfg.family in ("diffusion", "ldm") and cfg.diffusion.cond_dim:
        if condition is None:
            return None, None
        if not isinstance(condition, torch.Tensor) or condition.numel() != cfg.diffusion.cond_dim:
            raise ConfigError(f"key 'condition': this model takes {cfg.diffusion.cond_dim} comma-separated numbers")
        return condition.reshape(1, -1).to(device), None
    if condition is not None:
        raise ConfigError("key 'condition': this model is unconditional")
    return None, None


def _as_scan(model: GenerativeModel, array: torch.Tensor, seed: int, sampler: str, steps: int, condition) -> MetaTensor:
    ref = model.reference
    if array.ndim == 3:  # 2D model: one axial slice
        array = array[..., None]
    scan = make_scan(array, np.asarray(ref["affine"]), modality=ref.get("modality", ""), units=ref.get("units", ""),
                     series_description=f"medgen synthetic ({model.name})")
    cond = str(condition) if isinstance(condition, Path) else (
        [float(v) for v in condition] if condition is not None else None)
    return mark(scan, "synthesize", synthetic=True, model=model.name, seed=seed, sampler=sampler, steps=steps,
                family=model.config.family, condition=cond)
