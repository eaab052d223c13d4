"""Typed model configuration and the strict dict → dataclass loader every medgen config uses.

A YAML section maps onto a dataclass field by field. Unknown keys, missing required keys and values
of the wrong type raise :class:`~medgen.errors.ConfigError` naming the dotted key, e.g.
``key 'model.vae.channels': expected a list of int, got 'abc'``.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from typing import Any, Literal

from medgen.errors import ConfigError

Family = Literal["vae", "gan", "diffusion", "ldm"]


@dataclass
class VAEConfig:
    """KL autoencoder (MONAI ``AutoencoderKL``): each level after the first halves the size.

    ``mean_image``: code the residual around the average training image (aligned data: brains in
    one space), so short CPU runs reconstruct and sample anatomy instead of a blur.
    """

    channels: list[int] = field(default_factory=lambda: [16, 32, 32])
    latent_channels: int = 3
    num_res_blocks: int = 1
    norm_num_groups: int = 8
    attention: bool = False
    mean_image: bool = False


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
    ``mean_image`` (pixel-space diffusion): diffuse the residual ``(x - mean) / scale`` around the
    average training image (``scale``: the residuals' std), so a model trained for minutes on aligned
    data (brains in one space) already samples the average anatomy plus learnt variation.
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
    schedule: str = "scaled_linear_beta"
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
