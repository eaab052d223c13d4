"""Typed model configuration and the strict dict → dataclass loader every medgen config uses.

A YAML section maps onto a dataclass field by field. Unknown keys, missing required keys and values
of the wrong type raise :class:`~medgen.errors.ConfigError` naming the dotted key, e.g.
``key 'model.vae.channels': expected a list of int, got 'abc'``. :func:`read_yaml` is the one safe
reader of config files (no YAML tags), and :func:`check_model_config` bounds every size and count
(:data:`MAX_VOXELS`, ...) so an absurd config fails in one line before anything is allocated.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from medgen.errors import ConfigError

Family = Literal["vae", "gan", "diffusion", "ldm"]

# Bounds that keep an absurd config from allocating until the machine gives up. Each is far above the
# shipped configs (the largest: 192x224x192 = 8.3M voxels, 42M parameters, 8 levels at most).
MAX_VOXELS = 512**3
"""Voxels of one volume the network sees (``prod(model.size)``): 512 MiB of float32 per channel."""
MAX_PARAMETERS = 2**30
"""Parameters + buffers of one network: 4 GiB of float32 weights (training keeps about 4 copies)."""
MAX_LEVELS = 8
MAX_BLOCKS = 8
MAX_CHANNELS = 4096
"""Feature channels of one network level."""
MAX_INPUT_CHANNELS = 256
"""Image channels, label classes, latent channels, condition length."""


@dataclass
class VAEConfig:
    """KL autoencoder (MONAI ``AutoencoderKL``): each level after the first halves the size.

    ``mean_image``: code the residual around the average training image (aligned data: brains in
    one space), so short CPU runs reconstruct and sample anatomy instead of a blur.
    ``prior_rank``: the prior the VAE samples from on its own. 0: a Gaussian fitted to the training
    latents voxel by voxel; ``k > 0``: a low-rank Gaussian over whole latents (probabilistic PCA: the
    ``k`` leading components of the training latents plus the per-voxel rest), so a sample varies as
    whole subjects do instead of voxel by voxel.
    """

    channels: list[int] = field(default_factory=lambda: [16, 32, 32])
    latent_channels: int = 3
    num_res_blocks: int = 1
    norm_num_groups: int = 8
    attention: bool = False
    mean_image: bool = False
    prior_rank: int = 0


@dataclass
class GANConfig:
    """Whole-volume generator: a latent vector → ``(C, *size)`` in one pass.

    ``label_classes > 0`` makes it conditional on a one-hot label map (SPADE normalisation).
    ``mean_image``: add a fixed full-size image before the output ``tanh``, the average training
    image (last convolution at zero). For aligned data (brains in one space) samples
    are brain-shaped from the start and the convolutions only learn the variation: hundreds of steps
    instead of tens of thousands on CPU. Adds a ``prod(size)`` buffer per channel.
    """

    latent_dim: int = 64
    channels: list[int] = field(default_factory=lambda: [64, 32, 16, 8])
    label_classes: int = 0
    mean_image: bool = False
    disc_channels: int = 16
    disc_layers: int = 3


@dataclass
class DiffusionConfig:
    """Denoising UNet (MONAI ``DiffusionModelUNet``) and its training objective.

    ``objective``: ``"epsilon"`` (DDPM noise prediction, sampled with DDPM or DDIM) or ``"rflow"``
    (rectified-flow velocity ``x0 - noise``, sampled with the RFlow Euler solver).
    ``cond_dim > 0`` conditions on a vector of that many class/scalar values, with classifier-free
    guidance when trained with ``cond_drop > 0``.
    ``mean_image``: diffuse the residual ``(x - mean) / scale`` around the average training image
    (``scale``: the residuals' std), so a model trained for minutes on aligned data (brains in one
    space) already samples the average anatomy plus learnt variation; in latent diffusion, around
    the average training latent.
    ``label_classes > 0`` (pixel-space diffusion): a MONAI ``ControlNet`` conditioned on a one-hot
    label map of that many classes steers every denoising step (label-map → image, lesion inpainting).
    """

    channels: list[int] = field(default_factory=lambda: [16, 32, 64])
    num_res_blocks: int = 1
    attention: list[bool] = field(default_factory=lambda: [False, False, False])
    norm_num_groups: int = 8
    num_head_channels: int = 8
    objective: Literal["epsilon", "rflow"] = "epsilon"
    num_train_timesteps: int = 1000
    schedule: Literal["linear_beta", "scaled_linear_beta", "sigmoid_beta", "cosine"] = "scaled_linear_beta"
    cond_dim: int = 0
    cond_drop: float = 0.1
    mean_image: bool = False
    label_classes: int = 0


@dataclass
class ModelConfig:
    """What to build. ``size`` is the spatial size the network sees, ``(X, Y, Z)`` or ``(X, Y)``;
    data are padded/cropped to it (it is rounded up to what the network's downsampling needs).
    ``ldm`` uses ``vae_path``: a trained VAE model folder whose latents the diffusion model learns.
    """

    family: Family
    spatial_dims: int = 3
    in_channels: int = 1
    size: list[int] = field(default_factory=lambda: [64, 80, 64])
    vae: VAEConfig = field(default_factory=VAEConfig)
    gan: GANConfig = field(default_factory=GANConfig)
    diffusion: DiffusionConfig = field(default_factory=DiffusionConfig)
    vae_path: str | None = None

    @property
    def label_classes(self) -> int:
        """Classes of the one-hot label map the model is conditioned on (0: not label-conditioned)."""
        return {"gan": self.gan.label_classes, "diffusion": self.diffusion.label_classes}.get(self.family, 0)


def in_range(key: str, value: float, low: float | None = None, high: float | None = None) -> None:
    """Refuse ``value`` unless it is finite and within ``[low, high]`` (either bound may be None).

    Raises:
        ConfigError: naming ``key``, the allowed range and the value.
    """
    if math.isfinite(value) and (low is None or value >= low) and (high is None or value <= high):
        return
    if low is not None and high is not None:
        want = f"between {_number(low)} and {_number(high)}"
    else:
        want = f">= {_number(low)}" if low is not None else f"<= {_number(high)}" if high is not None else "finite"
    raise ConfigError(f"key '{key}': must be {want}, got {value!r}")


def check_model_config(cfg: ModelConfig, key: str = "model") -> None:
    """Value checks the types cannot express, for the sections ``cfg.family`` uses.

    The bounds (:data:`MAX_VOXELS`, :data:`MAX_CHANNELS`, ...) refuse an absurd config before any
    network is built; :func:`medgen.models.build.check_network` then bounds its parameter count.

    Raises:
        ConfigError: naming the dotted key (``key 'model.size': ...``).
    """
    if cfg.spatial_dims not in (2, 3):
        raise ConfigError(f"key '{key}.spatial_dims': must be 2 or 3, got {cfg.spatial_dims}")
    if len(cfg.size) != cfg.spatial_dims:
        raise ConfigError(f"key '{key}.size': needs {cfg.spatial_dims} entries, got {cfg.size}")
    for i, s in enumerate(cfg.size):
        in_range(f"{key}.size[{i}]", s, 1)
    if math.prod(cfg.size) > MAX_VOXELS:
        raise ConfigError(f"key '{key}.size': {'x'.join(map(str, cfg.size))} is {math.prod(cfg.size):,} voxels, "
                          f"over medgen's bound of {MAX_VOXELS:,} (512³)")
    in_range(f"{key}.in_channels", cfg.in_channels, 1, MAX_INPUT_CHANNELS)
    if cfg.family == "vae":
        v = cfg.vae
        _check_levels(f"{key}.vae", v.channels, v.norm_num_groups)
        in_range(f"{key}.vae.latent_channels", v.latent_channels, 1, MAX_INPUT_CHANNELS)
        in_range(f"{key}.vae.num_res_blocks", v.num_res_blocks, 0, MAX_BLOCKS)
        in_range(f"{key}.vae.prior_rank", v.prior_rank, 0, 1024)
    elif cfg.family == "gan":
        g = cfg.gan
        _check_levels(f"{key}.gan", g.channels, None)
        in_range(f"{key}.gan.latent_dim", g.latent_dim, 1, MAX_CHANNELS)
        in_range(f"{key}.gan.label_classes", g.label_classes, 0, MAX_INPUT_CHANNELS)
    else:
        d = cfg.diffusion
        _check_levels(f"{key}.diffusion", d.channels, d.norm_num_groups)
        if len(d.attention) != len(d.channels):
            raise ConfigError(f"key '{key}.diffusion.attention': needs one entry per entry of "
                              f"{key}.diffusion.channels")
        in_range(f"{key}.diffusion.num_res_blocks", d.num_res_blocks, 0, MAX_BLOCKS)
        in_range(f"{key}.diffusion.num_head_channels", d.num_head_channels, 1, MAX_CHANNELS)
        in_range(f"{key}.diffusion.num_train_timesteps", d.num_train_timesteps, 1, 100_000)
        in_range(f"{key}.diffusion.cond_dim", d.cond_dim, 0, MAX_INPUT_CHANNELS)
        in_range(f"{key}.diffusion.cond_drop", d.cond_drop, 0, 1)
        in_range(f"{key}.diffusion.label_classes", d.label_classes, 0, MAX_INPUT_CHANNELS)
    g = cfg.gan  # the discriminator: the GAN's, and the VAE's adversarial loss
    in_range(f"{key}.gan.disc_layers", g.disc_layers, 1, MAX_LEVELS)
    in_range(f"{key}.gan.disc_channels", g.disc_channels, 1, MAX_CHANNELS // 2**g.disc_layers)


def _check_levels(key: str, channels: list[int], groups: int | None) -> None:
    """``channels`` (one entry per level) within the bounds, each divisible by ``groups`` (GroupNorm)."""
    if not 1 <= len(channels) <= MAX_LEVELS:
        raise ConfigError(f"key '{key}.channels': needs 1 to {MAX_LEVELS} levels, got {len(channels)}")
    for i, c in enumerate(channels):
        in_range(f"{key}.channels[{i}]", c, 1, MAX_CHANNELS)
    if groups is not None:
        in_range(f"{key}.norm_num_groups", groups, 1, MAX_CHANNELS)
        if any(c % groups for c in channels):
            raise ConfigError(f"key '{key}.norm_num_groups': {groups} must divide every entry of {key}.channels "
                              f"{channels} (group normalisation)")


def _number(x: float) -> str:
    return f"{x:,}" if isinstance(x, int) else f"{x:g}"


MAX_CONFIG_BYTES = 10 * 2**20


def read_yaml(path: str | Path) -> dict[str, Any]:
    """The mapping in the YAML file ``path``, read with ``yaml.safe_load``: tags such as
    ``!!python/object`` are refused, never constructed. An empty file is ``{}``.

    Raises:
        ConfigError: naming the file: missing, unreadable, over 10 MiB, not YAML (with the line), or
            not a mapping.
    """
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"{p}: file not found")
    try:
        if p.stat().st_size > MAX_CONFIG_BYTES:
            raise ConfigError(f"{p}: {p.stat().st_size:,} bytes is not a config file (at most 10 MiB)")
        data = yaml.safe_load(p.read_text())
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"{p}: not readable ({_first_line(err)})") from None
    except yaml.MarkedYAMLError as err:
        where = f", line {err.problem_mark.line + 1}" if err.problem_mark is not None else ""
        raise ConfigError(f"{p}: not valid YAML for medgen ({err.problem or err.context}{where})") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"{p}: not valid YAML for medgen ({_first_line(err)})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: expected a mapping of keys (key: value), got a YAML {type(data).__name__}")
    return data


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0][:200] if text else type(err).__name__


def from_dict(cls: type, data: Any, path: str = "") -> Any:
    """Build dataclass ``cls`` from a (YAML) dict, checking every key and type.

    Raises:
        ConfigError: naming the dotted key path of the first unknown, missing or mistyped value.
    """
    if not isinstance(data, dict):
        raise ConfigError(f"key '{path or '<root>'}': expected a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        where = f"{path}.{unknown[0]}" if path else str(unknown[0])
        raise ConfigError(f"key '{where}': unknown key (allowed: {', '.join(fields)})")
    kwargs = {}
    for name, f in fields.items():
        key = f"{path}.{name}" if path else name
        if name in data:
            kwargs[name] = _coerce(hints[name], data[name], key)
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ConfigError(f"key '{key}': required but missing")
    return cls(**kwargs)


def to_dict(obj: Any) -> Any:
    """Plain dict/list/scalar form of a config dataclass (what :func:`from_dict` reads back)."""
    return dataclasses.asdict(obj) if dataclasses.is_dataclass(obj) else obj


def _coerce(tp: Any, value: Any, key: str) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, value, key)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in (a for a in args if a is not type(None)):
            try:
                return _coerce(arg, value, key)
            except ConfigError as err:
                errors.append(str(err))
        raise ConfigError(errors[0] if errors else f"key '{key}': unexpected value {value!r}")
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"key '{key}': expected one of {', '.join(map(repr, args))}, got {value!r}")
        return value
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"key '{key}': expected a list of {_name(args[0])}, got {value!r}")
        return [_coerce(args[0], v, f"{key}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"key '{key}': expected a mapping, got {value!r}")
        return {str(k): _coerce(args[1], v, f"{key}.{k}") for k, v in value.items()}
    if tp is Any:
        return value
    if tp is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if tp is int and isinstance(value, bool):
        raise ConfigError(f"key '{key}': expected int, got {value!r}")
    if isinstance(tp, type) and not isinstance(value, tp):
        raise ConfigError(f"key '{key}': expected {_name(tp)}, got {value!r}")
    return value


def _name(tp: Any) -> str:
    return getattr(tp, "__name__", str(tp))
