"""Run configuration: typed dataclasses mirroring the YAML files in ``configs/``.

A run config has four sections, each strictly checked (unknown keys and wrong types raise
:class:`~medgen.errors.ConfigError` naming the dotted key)::

    name: brain3mm_vae
    model: {family: vae, spatial_dims: 3, in_channels: 1, size: [64, 80, 64], vae: {...}}
    data:  {source: brain, n_subjects: 12, resolution: 3, ...}
    train: {steps: 300, batch_size: 2, lr: 2.0e-4, ...}
    loss:  {kl_weight: 1.0e-6, adv_weight: 0.0, ...}

:func:`check_config` also bounds every size and count (see :data:`MAX_BATCH_VOXELS`,
:data:`MAX_DATA_VALUES` and :mod:`medgen.models.config`), so an absurd config fails in milliseconds
with one line, before a run folder exists or data are loaded. Command-line overrides (``--steps``,
``--data``) go through the same checks: :func:`load_config` applies them to the YAML before parsing.
"""

from __future__ import annotations

import importlib.util
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from medgen.errors import ConfigError, DataError
from medgen.models.build import check_network, size_multiple
from medgen.models.config import (
    MAX_INPUT_CHANNELS,
    ModelConfig,
    check_model_config,
    from_dict,
    in_range,
    read_yaml,
    to_dict,
)
from medgen.models.shapes import round_up

MAX_BATCH_VOXELS = 2**28
"""Voxels x channels of one micro-batch (``batch_size`` x patch or model size): 1 GiB of float32."""
MAX_DATA_VALUES = 2**31
"""Values of the cached training set (subjects x model size x channels): 8 GiB of float32."""
MAX_SUBJECTS = 1000
RUN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
"""A run ``name``: one plain folder name, so ``runs/<name>`` stays inside ``runs/``."""


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
    init_from: str | None = None
    """A model folder or shipped name whose weights start the run (fine-tuning; a ControlNet on a
    trained diffusion model): see :mod:`medgen.training.warm_start`. Ignored on ``--resume``."""


@dataclass
class LossConfig:
    """Loss weights and GAN recipe.

    Attributes:
        kl_weight: VAE KL term. ``adv_weight``: VAE adversarial term (0 = off), from ``adv_start``.
        perceptual_weight: VAE perceptual term; needs ``perceptual_weights`` (a local file) since
            medgen never downloads weights.
        gan_loss: ``hinge`` or ``bce`` (non-saturating); ``r1_weight``: R1 penalty on real data.
        recon_weight: label-conditioned GAN only: L1 between the image generated from a subject's label
            map and that subject's image (the pix2pix/SPADE recipe), so intensities follow the labels
            from the first steps and the adversarial term only adds what L1 cannot (noise, texture).
    """

    kl_weight: float = 1.0e-6
    adv_weight: float = 0.0
    adv_start: int = 0
    perceptual_weight: float = 0.0
    perceptual_weights: str | None = None
    gan_loss: Literal["hinge", "bce"] = "hinge"
    r1_weight: float = 0.0
    recon_weight: float = 0.0


@dataclass
class RunConfig:
    """A whole training run: what to build, on which data, how to train it.

    ``name`` is the default run folder ``runs/<name>``, so it must be one plain folder name (letters,
    digits, ``.``, ``_``, ``-``, starting with a letter or digit, at most 100 characters): a name with a
    path separator, ``..`` or an absolute path is refused rather than sanitised, so it cannot escape.
    """

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


def load_config(path: str | Path, overrides: dict[str, Any] | None = None) -> RunConfig:
    """Read and strictly check a YAML run config, with ``overrides`` (dotted keys, e.g.
    ``{"train.steps": 50}``) applied to the YAML first, so they pass the same checks.

    Raises:
        ConfigError: unreadable or unsafe YAML, unknown key, wrong type, out-of-range or inconsistent
            values; the message names the file and the key.
    """
    p = Path(path)
    data = read_yaml(p)
    try:
        return parse_config(override(data, overrides or {}))
    except ConfigError as err:
        raise ConfigError(f"{p}: {err}") from None


def override(data: dict, overrides: dict[str, Any]) -> dict:
    """A copy of the config dict ``data`` with each dotted key of ``overrides`` set (None: left as is)."""
    out = {k: dict(v) if isinstance(v, dict) else v for k, v in data.items()}
    for dotted, value in overrides.items():
        if value is None:
            continue
        section, _, key = dotted.partition(".")
        if not isinstance(out.get(section, {}), dict):
            raise ConfigError(f"key '{section}': expected a mapping, got {out[section]!r}")
        out[section] = {**out.get(section, {}), key: value}
    return out


def config_dict(cfg: RunConfig) -> dict:
    """The YAML-able dict of ``cfg`` (what a model folder's ``config.yaml`` holds)."""
    return to_dict(cfg)


def check_config(cfg: RunConfig) -> None:
    """Value and cross-field checks the types alone cannot express, naming the key; rounds
    ``model.size`` and ``data.patch_size`` up to what the network's downsampling needs.

    Reads no file but ``loss.perceptual_weights``; :func:`check_inputs` checks the data folder and
    the VAE of a latent diffusion model.
    """
    if not RUN_NAME.fullmatch(cfg.name):
        raise ConfigError(f"key 'name': {cfg.name!r} is not a plain run name (letters, digits, '.', '_', '-', "
                          "starting with a letter or digit, at most 100 characters); it names the folder runs/<name>")
    m = cfg.model
    check_model_config(m)
    if m.family != "ldm":
        m.size = round_up(m.size, size_multiple(m))
        check_network(m)
    elif not m.vae_path:
        raise ConfigError("key 'model.vae_path': latent diffusion needs a trained VAE model folder")
    _check_data(cfg)
    _check_train(cfg)
    _check_loss(cfg)
    if cfg.data.patch_size is not None and m.family == "gan":
        raise ConfigError("key 'data.patch_size': the GAN generates whole volumes; patches need vae/diffusion")
    mean_image = {"vae": m.vae.mean_image, "diffusion": m.diffusion.mean_image}.get(m.family, False)
    if cfg.data.patch_size is not None and mean_image:
        raise ConfigError(f"key 'model.{m.family}.mean_image': the mean image is a whole-volume prior; "
                          "it cannot be combined with data.patch_size")
    labelled = m.family in ("gan", "diffusion")
    if cfg.data.condition == "labels" and labelled and m.label_classes != cfg.data.label_classes:
        raise ConfigError(f"key 'model.{m.family}.label_classes': must equal data.label_classes for label conditioning")
    if m.diffusion.label_classes and m.family == "ldm":
        raise ConfigError("key 'model.diffusion.label_classes': label-map conditioning is for pixel-space "
                          "diffusion, not family 'ldm'")
    if m.family == "diffusion" and m.diffusion.label_classes and cfg.data.condition != "labels":
        raise ConfigError("key 'data.condition': a label-conditioned diffusion model (model.diffusion.label_classes) "
                          "needs data.condition: labels")
    if cfg.loss.perceptual_weight > 0 and importlib.util.find_spec("torchvision") is None:
        raise ConfigError(
            "key 'loss.perceptual_weight': the perceptual loss (MONAI's ResNet-50) needs torchvision, which is not "
            "installed, and local weights (medgen never downloads weights); set loss.perceptual_weight: 0 and use "
            "loss.adv_weight for sharper reconstructions, or install torchvision")
    if cfg.loss.perceptual_weight > 0 and not cfg.loss.perceptual_weights:
        raise ConfigError(
            "key 'loss.perceptual_weights': a perceptual loss needs local network weights (a file path); "
            "medgen never downloads weights — set loss.perceptual_weight: 0 or give the file"
        )
    if cfg.loss.perceptual_weights and not Path(cfg.loss.perceptual_weights).is_file():
        raise ConfigError(f"key 'loss.perceptual_weights': file not found: {cfg.loss.perceptual_weights}")


def check_inputs(cfg: RunConfig) -> ModelConfig | None:
    """Check what a run reads from disk before it starts: ``data.folder``, and for latent diffusion
    the VAE model folder ``model.vae_path`` (its config, and the diffusion network on its latents).

    Returns:
        The VAE's model config for family ``ldm``, else None.

    Raises:
        ConfigError: naming the key and the file.
    """
    d, m = cfg.data, cfg.model
    if cfg.train.init_from:
        from medgen.training.warm_start import source_weights

        source_weights(cfg.train.init_from)
    if d.source == "folder":
        if not d.folder:
            raise ConfigError("key 'data.folder': data.source is 'folder' but no folder was given "
                              "(set data.folder or pass --data DIR)")
        if not Path(d.folder).is_dir():
            raise ConfigError(f"key 'data.folder': {d.folder} is not a folder")
    if m.family != "ldm":
        return None
    from medgen.models.hub import model_folder, read_model_config

    try:  # a folder or a shipped model's name (brain-vae)
        vae_cfg = read_model_config(model_folder(str(m.vae_path)) / "config.yaml")
    except (ConfigError, DataError) as err:
        raise ConfigError(f"key 'model.vae_path': {err}") from None
    if vae_cfg.family != "vae":
        raise ConfigError(f"key 'model.vae_path': {m.vae_path} holds a {vae_cfg.family} model, not a VAE")
    check_network(m, vae_cfg)
    return vae_cfg


def _check_data(cfg: RunConfig) -> None:
    d, m, t = cfg.data, cfg.model, cfg.train
    builtin = d.source != "folder"
    in_range("data.n_subjects", d.n_subjects, 1, MAX_SUBJECTS)
    in_range("data.val_subjects", d.val_subjects, 0, d.n_subjects - 1 if builtin else None)
    in_range("data.seed", d.seed, 0, 2**32 - 1)
    if d.source == "brain":
        from medgen.data.contrast import CONTRASTS

        if d.resolution not in (1, 2, 3):
            raise ConfigError(f"key 'data.resolution': the built-in cohort is simulated at 1, 2 or 3 mm, "
                              f"got {d.resolution}")
        unknown = [c for c in d.contrasts if c not in CONTRASTS] if d.contrasts else ["(none)"]
        if unknown:
            raise ConfigError(f"key 'data.contrasts': {unknown[0]!r} is not one of {', '.join(CONTRASTS)}")
    labelled = d.condition in ("labels", "tissue_fractions")
    in_range("data.label_classes", d.label_classes, 2 if labelled else 1, MAX_INPUT_CHANNELS)
    _check_pair("data.percentiles", d.percentiles, 0, 100)
    _check_pair("data.hu_window", d.hu_window, None, None)
    in_range("data.slices", d.slices, 1, 4096)
    in_range("data.downsample", d.downsample, 1, 16)
    if d.patch_size is not None:
        if len(d.patch_size) != m.spatial_dims:
            raise ConfigError(f"key 'data.patch_size': needs {m.spatial_dims} entries, got {d.patch_size}")
        for i, p in enumerate(d.patch_size):
            in_range(f"data.patch_size[{i}]", p, 1, m.size[i])
        if m.family != "ldm":
            d.patch_size = round_up(d.patch_size, size_multiple(m))
            if any(p > s for p, s in zip(d.patch_size, m.size)):
                raise ConfigError(f"key 'data.patch_size': {d.patch_size} (rounded up to the network's "
                                  f"downsampling) is larger than model.size {m.size}")
    channels = m.in_channels + (d.label_classes if d.condition == "labels" else 0)
    spatial = d.patch_size or m.size
    batch = t.batch_size * math.prod(spatial) * channels
    if batch > MAX_BATCH_VOXELS:
        raise ConfigError(f"key 'train.batch_size': {t.batch_size} x {'x'.join(map(str, spatial))} voxels x "
                          f"{channels} channels is {batch:,} values per micro-batch, over medgen's bound of "
                          f"{MAX_BATCH_VOXELS:,}; use a smaller batch_size (with grad_accum) or data.patch_size")
    items = d.n_subjects * (d.slices if m.spatial_dims == 2 else 1)
    items *= len(d.contrasts) if d.contrast_mode == "condition" else 1
    cached = items * math.prod(m.size) * channels
    if builtin and cached > MAX_DATA_VALUES:
        raise ConfigError(f"key 'data.n_subjects': {items} training items of {'x'.join(map(str, m.size))} voxels x "
                          f"{channels} channels is {cached:,} cached values, over medgen's bound of "
                          f"{MAX_DATA_VALUES:,}; use fewer subjects or a smaller model.size")


def _check_train(cfg: RunConfig) -> None:
    t = cfg.train
    in_range("train.steps", t.steps, 1)
    in_range("train.batch_size", t.batch_size, 1)
    in_range("train.grad_accum", t.grad_accum, 1, 1024)
    in_range("train.lr", t.lr, 1e-12, 10.0)
    if t.disc_lr is not None:
        in_range("train.disc_lr", t.disc_lr, 1e-12, 10.0)
    if len(t.betas) != 2 or not all(0 <= b < 1 for b in t.betas):
        raise ConfigError(f"key 'train.betas': expected two numbers in [0, 1), got {t.betas}")
    in_range("train.weight_decay", t.weight_decay, 0, 10.0)
    in_range("train.warmup_steps", t.warmup_steps, 0)
    in_range("train.grad_clip", t.grad_clip, 0)
    if not 0 <= t.ema_decay < 1:
        raise ConfigError(f"key 'train.ema_decay': must be in [0, 1) (0: no EMA), got {t.ema_decay!r}")
    for key in ("val_every", "checkpoint_every", "log_every"):
        in_range(f"train.{key}", getattr(t, key), 0)
    in_range("train.seed", t.seed, 0, 2**32 - 1)


def _check_loss(cfg: RunConfig) -> None:
    for key in ("kl_weight", "adv_weight", "perceptual_weight", "r1_weight", "recon_weight"):
        in_range(f"loss.{key}", getattr(cfg.loss, key), 0)
    in_range("loss.adv_start", cfg.loss.adv_start, 0)
    if cfg.loss.recon_weight > 0 and not (cfg.model.family == "gan" and cfg.model.gan.label_classes > 0):
        raise ConfigError("key 'loss.recon_weight': only a label-conditioned GAN (model.gan.label_classes > 0) "
                          "has a real image to reconstruct; set it to 0")


def _check_pair(key: str, pair: list[float], low: float | None, high: float | None) -> None:
    """``pair`` is ``[a, b]`` with ``a < b``, both finite and within ``[low, high]``."""
    if len(pair) != 2:
        raise ConfigError(f"key '{key}': expected two numbers [low, high], got {pair}")
    for i, v in enumerate(pair):
        in_range(f"{key}[{i}]", v, low, high)
    if not pair[0] < pair[1]:
        raise ConfigError(f"key '{key}': low must be below high, got {pair}")
