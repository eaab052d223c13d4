"""Run configuration: typed dataclasses mirroring the YAML files in ``configs/``.

A run config has four sections, each strictly checked (unknown keys and wrong types raise
:class:`~medgen.errors.ConfigError` naming the dotted key)::

    name: brain3mm_vae
    model: {family: vae, spatial_dims: 3, in_channels: 1, size: [64, 80, 64], vae: {...}}
    data:  {source: brain, n_subjects: 12, resolution: 3, ...}
    train: {steps: 300, batch_size: 2, lr: 2.0e-4, ...}
    loss:  {kl_weight: 1.0e-6, adv_weight: 0.0, ...}
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import yaml

from medgen.errors import ConfigError
from medgen.models.build import size_multiple
from medgen.models.config import ModelConfig, from_dict, to_dict
from medgen.models.shapes import round_up


@dataclass
class DataConfig:
    """Where training volumes come from and how they are prepared.

    Attributes:
        source: ``brain`` (built-in brain cohort), ``ct`` (built-in CT phantom) or ``folder``.
        folder: image folder for ``source: folder`` (the CLI's ``--data`` sets it).
        resolution: brain cohort voxel size in mm.
        contrasts: brain cohort contrasts; ``contrast_mode: channels`` stacks them as channels
            (multi-contrast model), ``condition`` makes one sample per contrast with a one-hot condition.
        condition: ``none``; ``labels`` (one-hot tissue label map, for the SPADE GAN);
            ``contrast`` (one-hot contrast vector); ``tissue_fractions`` (CSF/GM/WM volume fractions).
        percentiles: MR intensity range (percent) mapped to [-1, 1]; ``hu_window``: same for CT (HU).
        downsample: resample volumes to ``downsample`` times coarser voxels first (CPU-sized runs).
        slices: for 2D models, how many central axial slices each volume gives.
        patch_size: train on random patches of this size (VAE/diffusion) instead of whole volumes.
    """

    source: Literal["brain", "ct", "folder"] = "brain"
    folder: str | None = None
    n_subjects: int = 12
    val_subjects: int = 2
    resolution: int = 3
    seed: int = 0
    contrasts: list[str] = field(default_factory=lambda: ["t1"])
    contrast_mode: Literal["channels", "condition"] = "channels"
    condition: Literal["none", "labels", "contrast", "tissue_fractions"] = "none"
    label_classes: int = 4
    percentiles: list[float] = field(default_factory=lambda: [0.5, 99.5])
    hu_window: list[float] = field(default_factory=lambda: [-1000.0, 1000.0])
    slices: int = 1
    downsample: int = 1
    patch_size: list[int] | None = None


@dataclass
class TrainConfig:
    """Optimisation and bookkeeping (steps are optimizer steps; ``grad_accum`` micro-batches each)."""

    steps: int = 300
    batch_size: int = 2
    lr: float = 2.0e-4
    disc_lr: float | None = None
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    weight_decay: float = 0.0
    lr_schedule: Literal["constant", "cosine"] = "cosine"
    warmup_steps: int = 0
    grad_accum: int = 1
    grad_clip: float = 1.0
    ema_decay: float = 0.0
    precision: Literal["fp32", "bf16", "fp16"] = "bf16"
    val_every: int = 100  # 0: never validate
    checkpoint_every: int = 100
    log_every: int = 10
    seed: int = 0


@dataclass
class LossConfig:
    """Loss weights and GAN recipe.

    Attributes:
        kl_weight: VAE KL term. ``adv_weight``: VAE adversarial term (0 = off), from ``adv_start``.
        perceptual_weight: VAE perceptual term; needs ``perceptual_weights`` (a local file) since
            medgen never downloads weights.
        gan_loss: ``hinge`` or ``bce`` (non-saturating); ``r1_weight``: R1 penalty on real data.
    """

    kl_weight: float = 1.0e-6
    adv_weight: float = 0.0
    adv_start: int = 0
    perceptual_weight: float = 0.0
    perceptual_weights: str | None = None
    gan_loss: Literal["hinge", "bce"] = "hinge"
    r1_weight: float = 0.0


@dataclass
class RunConfig:
    """A whole training run: what to build, on which data, how to train it."""

    model: ModelConfig
    name: str = "medgen-model"
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    loss: LossConfig = field(default_factory=LossConfig)


def parse_config(data: dict) -> RunConfig:
    """Strictly parse a config dict (as read from YAML) into a :class:`RunConfig`."""
    cfg = from_dict(RunConfig, data)
    check_config(cfg)
    return cfg


def load_config(path: str | Path) -> RunConfig:
    """Read and strictly check a YAML run config.

    Raises:
        ConfigError: unreadable YAML, unknown key, wrong type or inconsistent values (key named).
    """
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"{p}: config file not found")
    try:
        data = yaml.safe_load(p.read_text())
    except yaml.YAMLError as err:
        raise ConfigError(f"{p}: not valid YAML ({str(err).splitlines()[0]})") from None
    try:
        return parse_config(data or {})
    except ConfigError as err:
        raise ConfigError(f"{p}: {err}") from None


def config_dict(cfg: RunConfig) -> dict:
    """The YAML-able dict of ``cfg`` (what a model folder's ``config.yaml`` holds)."""
    return to_dict(cfg)


def check_config(cfg: RunConfig) -> None:
    """Cross-field checks the types alone cannot express."""
    m = cfg.model
    if m.spatial_dims not in (2, 3):
        raise ConfigError(f"key 'model.spatial_dims': must be 2 or 3, got {m.spatial_dims}")
    if len(m.size) != m.spatial_dims:
        raise ConfigError(f"key 'model.size': needs {m.spatial_dims} entries, got {m.size}")
    if m.family != "ldm":
        m.size = round_up(m.size, size_multiple(m))
    if m.family == "ldm" and not m.vae_path:
        raise ConfigError("key 'model.vae_path': latent diffusion needs a trained VAE model folder")
    if len(m.diffusion.attention) != len(m.diffusion.channels):
        raise ConfigError("key 'model.diffusion.attention': needs one entry per entry of model.diffusion.channels")
    if cfg.data.patch_size is not None and m.family == "gan":
        raise ConfigError("key 'data.patch_size': the GAN generates whole volumes; patches need vae/diffusion")
    mean_image = {"vae": m.vae.mean_image, "diffusion": m.diffusion.mean_image}.get(m.family, False)
    if cfg.data.patch_size is not None and mean_image:
        raise ConfigError(f"key 'model.{m.family}.mean_image': the mean image is a whole-volume prior; "
                          "it cannot be combined with data.patch_size")
    if m.family == "ldm" and m.diffusion.mean_image:
        raise ConfigError("key 'model.diffusion.mean_image': only for pixel-space diffusion, not family 'ldm'")
    labelled = m.family in ("gan", "diffusion")
    if cfg.data.condition == "labels" and labelled and m.label_classes != cfg.data.label_classes:
        raise ConfigError(f"key 'model.{m.family}.label_classes': must equal data.label_classes for label conditioning")
    if m.diffusion.label_classes and m.family == "ldm":
        raise ConfigError("key 'model.diffusion.label_classes': label-map conditioning is for pixel-space "
                          "diffusion, not family 'ldm'")
    if m.family == "diffusion" and m.diffusion.label_classes and cfg.data.condition != "labels":
        raise ConfigError("key 'data.condition': a label-conditioned diffusion model (model.diffusion.label_classes) "
                          "needs data.condition: labels")
    if cfg.loss.perceptual_weight > 0 and not cfg.loss.perceptual_weights:
        raise ConfigError(
            "key 'loss.perceptual_weights': a perceptual loss needs local network weights (a file path); "
            "medgen never downloads weights — set loss.perceptual_weight: 0 or give the file"
        )
    if cfg.loss.perceptual_weights and not Path(cfg.loss.perceptual_weights).is_file():
        raise ConfigError(f"key 'loss.perceptual_weights': file not found: {cfg.loss.perceptual_weights}")
    if cfg.train.grad_accum < 1 or cfg.train.batch_size < 1 or cfg.train.steps < 1:
        raise ConfigError("key 'train': steps, batch_size and grad_accum must be >= 1")
