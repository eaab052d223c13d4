"""Draw samples from any model family: GAN (one pass), diffusion (DDPM/DDIM/RFlow), VAE (prior)."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from monai.data import MetaTensor

from medgen.errors import ConfigError
from medgen.io.meta import make_scan
from medgen.io.provenance import mark
from medgen.models.hub import GenerativeModel
from medgen.models.sampling import resolve_sampler, sample, with_labels
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
    condition: torch.Tensor | Path | None = None, guidance: float = 1.0, batch_size: int = 0,
    progress: Callable[[int, int], None] | None = None,
) -> list[MetaTensor]:
    """``num`` synthetic volumes ``(C, X, Y, Z)`` (or ``(C, X, Y)`` for 2D models) in data units.

    Sample ``i`` is drawn with seed ``seed + i`` (the same seed gives the same volume, whatever the
    batch it was drawn in, up to float rounding).

    Args:
        sampler, steps: diffusion only: ``ddpm``/``ddim`` for epsilon models, ``rflow`` for
            rectified-flow models (default: DDIM-50 or RFlow-10).
        condition: diffusion: vector ``(cond_dim,)`` (class one-hot / scalars); label-conditioned GAN
            or diffusion model: path of a label map (integer labels, fitted to the model size).
        guidance: classifier-free guidance scale for conditional diffusion (1 = none).
        batch_size: volumes per network call; 0 = automatic (up to 4 for volumes of at most
            64x80x64 voxels, else 1). On CPU, batches of 2+ are much faster per volume: PyTorch
            runs small batch-1 3D convolutions on a slow non-oneDNN path.

    Returns:
        MetaTensors with the training data's affine, marked synthetic.
    """
    if not math.isfinite(guidance):
        raise ConfigError(f"key 'guidance': must be a finite number, got {guidance}")
    cfg = model.config
    device = next(model.network.parameters()).device
    family = cfg.family
    if family in ("diffusion", "ldm"):
        sampler, steps = resolve_sampler(cfg.diffusion, sampler, steps)
    else:
        if sampler is not None or steps is not None:
            raise ConfigError(f"key 'sampler': model '{model.name}' is a {family}, sampled in one pass; "
                              "--sampler and --steps are for diffusion models")
        sampler, steps = "single-pass" if family == "gan" else "prior", 1
    cond, labels = _conditions(model, condition, device)
    if batch_size <= 0:
        batch_size = 4 if math.prod(cfg.size) <= 64 * 80 * 64 else 1
    outputs: list[MetaTensor] = []
    for start in range(0, num, batch_size):
        seeds = list(range(seed + start, seed + min(num, start + batch_size)))
        gens = [torch.Generator().manual_seed(s) for s in seeds]
        x = _batch(model, gens, sampler, steps, cond, labels, guidance, device)
        for s, volume in zip(seeds, x):
            units = model.normalization.to_units(volume.float().cpu())
            outputs.append(_as_scan(model, units, s, sampler, steps, condition))
        if progress:
            progress(len(outputs), num)
    return outputs


def _batch(model, gens, sampler, steps, cond, labels, guidance, device) -> torch.Tensor:
    """One network batch: row ``i`` drawn from generator ``gens[i]``; ``(B, C, *size)`` model range."""
    cfg, net, b = model.config, model.network, len(gens)
    if labels is not None:
        labels = labels.expand(b, *labels.shape[1:])
    if cond is not None:
        cond = cond.expand(b, -1)
    if cfg.family == "gan":
        z = torch.cat([torch.randn(1, cfg.gan.latent_dim, generator=g) for g in gens]).to(device)
        return net(z, labels)
    if cfg.family == "vae":
        return net.decode(torch.cat([net.sample_latent(g) for g in gens]))
    shape = [b, cfg.in_channels, *cfg.size]
    if cfg.family == "ldm":
        down = model.vae.downsampling
        shape = [b, model.vae_config.vae.latent_channels, *[s // down for s in cfg.size]]
    x = sample(with_labels(net, labels), cfg.diffusion, shape, sampler=sampler, steps=steps, cond=cond,
               guidance=guidance, generator=gens, device=device)
    x = net.from_residual(x)
    return model.vae.decode(x) if cfg.family == "ldm" else x


def _conditions(model: GenerativeModel, condition, device) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    cfg = model.config
    if cfg.label_classes:
        if not isinstance(condition, Path):
            raise ConfigError(f"key 'condition': this {cfg.family} model is conditioned on label maps; "
                              "pass --condition LABELS.nii.gz")
        from medgen.io import load_scan

        lab = torch.as_tensor(fit(load_scan(condition).float(), cfg.size)).round().long()[0]
        onehot = torch.nn.functional.one_hot(lab.clamp(0, cfg.label_classes - 1), cfg.label_classes)
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


@torch.no_grad()
def render_labels(model: GenerativeModel, onehot: torch.Tensor, seed: int, *, sampler: str | None = None,
                  steps: int | None = None) -> torch.Tensor:
    """An image ``(1, C, *size)`` in model range rendered from a one-hot label map ``(1, K, *size)`` by a
    label-conditioned GAN (one pass) or diffusion model (its default sampler), drawn with ``seed``."""
    cfg = model.config
    if not cfg.label_classes:
        raise ConfigError(f"model '{model.name}': not conditioned on label maps (needs gan.label_classes or "
                          "diffusion.label_classes > 0)")
    device = next(model.network.parameters()).device
    onehot = onehot.to(device)
    if cfg.family == "gan":
        z = torch.randn(1, cfg.gan.latent_dim, generator=torch.Generator().manual_seed(seed))
        return model.network(z.to(device), onehot)
    sampler, steps = resolve_sampler(cfg.diffusion, sampler, steps)
    x = sample(with_labels(model.network, onehot), cfg.diffusion, [1, cfg.in_channels, *onehot.shape[2:]],
               sampler=sampler, steps=steps, generator=torch.Generator().manual_seed(seed), device=device)
    return model.network.from_residual(x)


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
