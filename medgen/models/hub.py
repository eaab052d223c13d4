"""Model folders a user can copy and share: save one, load one with :func:`load_model`.

A model folder holds::

    config.yaml          the run config (its ``model`` section rebuilds the network)
    model.safetensors    inference weights (the EMA weights when training kept an EMA)
    normalization.json   how data units map to the model's [-1, 1] and back (HU window, percentiles)
    reference.json       affine (voxel → RAS mm), spacing, data shape and modality of the training data
    model_card.md        data, steps, metrics: what the model is and how it was made
    vae.safetensors, vae_config.yaml   latent diffusion only: the autoencoder of its latents

Weights are safetensors only; nothing is unpickled.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import yaml
from safetensors.torch import load_file, save_file
from torch import nn

from medgen.errors import ConfigError, DataError
from medgen.models.build import build_network
from medgen.models.config import ModelConfig, from_dict, to_dict
from medgen.models.normalization import Normalization
from medgen.models.vae import VAE


@dataclass
class GenerativeModel:
    """A trained model, ready to sample: network (eval mode), config, units and geometry.

    Attributes:
        network: ``VAE``, ``Generator`` or ``DiffusionNet`` with inference weights.
        vae: the autoencoder of a latent diffusion model (else None).
        reference: ``{"affine": 4x4 list, "spacing": [mm], "shape": [X, Y, Z], "modality", "units"}``.
    """

    config: ModelConfig
    network: nn.Module
    normalization: Normalization
    reference: dict[str, Any]
    name: str
    path: Path | None = None
    vae: VAE | None = None
    vae_config: ModelConfig | None = None
    card: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def to(self, device: torch.device | str) -> GenerativeModel:
        self.network.to(device)
        if self.vae is not None:
            self.vae.to(device)
        return self


def read_model_config(path: Path, section: str = "model") -> ModelConfig:
    """The ``model`` section of a ``config.yaml`` as a :class:`ModelConfig` (strictly checked)."""
    data = yaml.safe_load(Path(path).read_text()) or {}
    if section not in data:
        raise ConfigError(f"key '{section}': missing in {path}")
    return from_dict(ModelConfig, data[section], section)


def write_model(
    folder: Path, *, run_config: dict, network: nn.Module, normalization: Normalization,
    reference: dict, card: str, vae: VAE | None = None, vae_config: ModelConfig | None = None,
) -> Path:
    """Write a model folder (the caller makes it atomic). Returns ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.yaml").write_text(yaml.safe_dump(run_config, sort_keys=False))
    save_file(_contiguous(network.state_dict()), str(folder / "model.safetensors"))
    (folder / "normalization.json").write_text(json.dumps(normalization.to_json(), indent=2))
    (folder / "reference.json").write_text(json.dumps(reference, indent=2))
    (folder / "model_card.md").write_text(card)
    if vae is not None and vae_config is not None:
        save_file(_contiguous(vae.state_dict()), str(folder / "vae.safetensors"))
        (folder / "vae_config.yaml").write_text(yaml.safe_dump({"model": to_dict(vae_config)}, sort_keys=False))
    return folder


BUILTIN_MODELS = {"ct-lesions": "ct_lesions_rflow"}
"""Model folders shipped in ``medgen/weights``, by the name :func:`load_model` accepts."""


def model_folder(path: str | Path) -> Path:
    """``path`` itself, or the shipped folder of a built-in model name (``"ct-lesions"``)."""
    if not Path(path).exists() and str(path) in BUILTIN_MODELS:
        return Path(__file__).resolve().parents[1] / "weights" / BUILTIN_MODELS[str(path)]
    return Path(path)


def load_model(path: str | Path, device: torch.device | str = "cpu") -> GenerativeModel:
    """Load a model folder written by ``medgen train`` (config + safetensors weights + card), or a
    built-in model by name (:data:`BUILTIN_MODELS`: ``"ct-lesions"``, the label-map → CT model).

    Example:
        >>> model = medgen.load_model("runs/brain3mm_gan/model")   # doctest: +SKIP
        >>> model.config.family
        'gan'

    Raises:
        DataError: if the folder or one of its files is missing or unreadable.
    """
    folder = model_folder(path)
    for name in ("config.yaml", "model.safetensors", "normalization.json", "reference.json"):
        if not (folder / name).is_file():
            raise DataError(f"{folder}: not a medgen model folder (missing {name})")
    cfg = read_model_config(folder / "config.yaml")
    vae = vae_cfg = None
    if cfg.family == "ldm":
        vae_cfg = read_model_config(folder / "vae_config.yaml")
        vae = VAE(vae_cfg)
        vae.load_state_dict(load_file(str(folder / "vae.safetensors")))
        vae.eval()
    network = build_network(cfg, vae_cfg)
    try:
        network.load_state_dict(load_file(str(folder / "model.safetensors")))
    except (RuntimeError, OSError) as err:
        raise DataError(f"{folder / 'model.safetensors'}: weights do not match config.yaml ({err})") from None
    network.eval()
    card = (folder / "model_card.md").read_text() if (folder / "model_card.md").is_file() else ""
    model = GenerativeModel(
        config=cfg, network=network,
        normalization=Normalization.from_json(json.loads((folder / "normalization.json").read_text())),
        reference=json.loads((folder / "reference.json").read_text()), name=_model_name(path, folder),
        path=folder, vae=vae, vae_config=vae_cfg, card=card,
    )
    return model.to(device)


def _model_name(path: str | Path, folder: Path) -> str:
    if folder != Path(path):  # a built-in model
        return str(path)
    return folder.resolve().name if folder.name != "model" else folder.resolve().parent.name


def _contiguous(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().contiguous() for k, v in state.items()}
