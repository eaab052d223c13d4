"""Model folders a user can copy and share: save one, load one with :func:`load_model`.

A model folder holds::

    config.yaml          the run config (its ``model`` section rebuilds the network)
    model.safetensors    inference weights (the EMA weights when training kept an EMA)
    normalization.json   how data units map to the model's [-1, 1] and back (HU window, percentiles)
    reference.json       affine (voxel → RAS mm), spacing, data shape and modality of the training data
    model_card.md        data, steps, metrics: what the model is and how it was made
    vae.safetensors, vae_config.yaml   latent diffusion only: the autoencoder of its latents (a shipped
                         folder may leave them out when ``model.vae_path`` names a shipped VAE, which
                         is then loaded from its own folder instead of a second copy)

Weights are safetensors only; nothing is unpickled.

The enhancement and feature networks ship as folders of the same kind with a ``config.json``
(:mod:`medgen.models.task_network`). :func:`load_model` loads either kind by folder or shipped name,
and :func:`list_models` describes the shipped ones (``medgen models``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from safetensors.torch import save_file
from torch import nn

from medgen.errors import ConfigError, DataError
from medgen.models.build import build_network, check_network
from medgen.models.config import ModelConfig, check_model_config, from_dict, read_yaml, to_dict
from medgen.models.normalization import Normalization
from medgen.models.task_network import ARCHITECTURES, TaskNetwork, load_task_network, read_json
from medgen.models.vae import VAE
from medgen.models.weights_file import load_weights


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
    """The ``model`` section of a ``config.yaml`` as a :class:`ModelConfig`, strictly checked and
    bounded (:func:`~medgen.models.config.check_model_config`); YAML tags are refused, never run.

    Raises:
        ConfigError: naming the file and the key.
    """
    data = read_yaml(path)
    if section not in data:
        raise ConfigError(f"{path}: key '{section}': missing")
    try:
        cfg = from_dict(ModelConfig, data[section], section)
        check_model_config(cfg, section)
    except ConfigError as err:
        raise ConfigError(f"{path}: {err}") from None
    return cfg


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


SHIPPED_DIR = Path(__file__).resolve().parents[1] / "weights"
def shipped_models() -> list[str]:
    """Names of the model folders shipped in ``medgen/weights`` (each folder's name, the name
    :func:`load_model` accepts); read when asked, so a folder that ``scripts/train_generators.py`` or a
    training script writes there ships by its name."""
    if not SHIPPED_DIR.is_dir():
        return []
    return [f.name for f in sorted(SHIPPED_DIR.iterdir()) if (f / "model.safetensors").is_file()]


def model_folder(path: str | Path) -> Path:
    """``path`` itself where it exists, else the shipped folder of a model name (:func:`shipped_models`).

    Raises:
        DataError: neither; the message lists the shipped names.
    """
    if Path(path).exists():
        return Path(path)
    names = shipped_models()
    if str(path) in names:
        return SHIPPED_DIR / str(path)
    raise DataError(f"{path}: no such model folder, nor a shipped model ({', '.join(names)})")


def load_model(path: str | Path, device: torch.device | str = "cpu") -> GenerativeModel | TaskNetwork:
    """Load a model folder, or a shipped model by name (:func:`shipped_models`, ``medgen models``).

    A folder written by ``medgen train`` (``config.yaml`` + weights + card), like the shipped
    ``"ct-lesions"`` (label map → CT), loads as a :class:`GenerativeModel`; a folder with a
    ``config.json`` (the shipped ``"denoiser3d"``, ``"superres2d"``, ``"superres2d-gan"``,
    ``"features_ssl3d"``, or one the training scripts write) as a
    :class:`~medgen.models.task_network.TaskNetwork`.

    Example:
        >>> model = medgen.load_model("runs/brain3mm_gan/model")   # doctest: +SKIP
        >>> model.config.family
        'gan'
        >>> medgen.load_model("superres2d").config["factors"]      # doctest: +SKIP
        [2, 3, 4, 5, 6]

    Raises:
        DataError: if the folder or one of its files is missing or unreadable, or a name is not shipped.
    """
    folder = model_folder(path)
    if (folder / "config.json").is_file():
        return load_task_network(folder, _model_name(path, folder)).to(device)
    for name in ("config.yaml", "model.safetensors", "normalization.json", "reference.json"):
        if not (folder / name).is_file():
            raise DataError(f"{folder}: not a medgen model folder (missing {name})")
    # Every file is checked before the network is built: sizes bounded on the meta device, weights
    # compared with the config through the safetensors header, so a bad folder costs no memory.
    cfg = read_model_config(folder / "config.yaml")
    vae = vae_cfg = None
    vae_files = (folder / "vae_config.yaml", folder / "vae.safetensors")
    if cfg.family == "ldm":
        if not vae_files[0].is_file() and str(cfg.vae_path) in shipped_models():  # shipped: no second copy
            shipped_vae = SHIPPED_DIR / str(cfg.vae_path)
            vae_files = (shipped_vae / "config.yaml", shipped_vae / "model.safetensors")
        vae_cfg = read_model_config(vae_files[0])
    networks = [(folder / "config.yaml", cfg, vae_cfg)] + ([(vae_files[0], vae_cfg, None)] if vae_cfg else [])
    for config_path, net_cfg, latent_of in networks:
        try:
            check_network(net_cfg, latent_of)
        except ConfigError as err:
            raise ConfigError(f"{config_path}: {err}") from None
    if vae_cfg is not None:
        vae = load_weights(VAE(vae_cfg), vae_files[1], vae_files[0].name).eval()
    norm_path, ref_path = folder / "normalization.json", folder / "reference.json"
    try:
        normalization = from_dict(Normalization, read_json(norm_path))
    except ConfigError as err:
        raise DataError(f"{norm_path}: {err}") from None
    if not normalization.low < normalization.high:
        raise DataError(f"{norm_path}: key 'low': must be below 'high', got {normalization.low}, {normalization.high}")
    reference = read_json(ref_path)
    try:
        affine_ok = np.asarray(reference["affine"], dtype=float).shape == (4, 4)
    except (KeyError, TypeError, ValueError):
        affine_ok = False
    if not affine_ok:
        raise DataError(f"{ref_path}: key 'affine': expected a 4x4 matrix of numbers")
    network = load_weights(build_network(cfg, vae_cfg), folder / "model.safetensors", "config.yaml").eval()
    card = (folder / "model_card.md").read_text() if (folder / "model_card.md").is_file() else ""
    model = GenerativeModel(
        config=cfg, network=network, normalization=normalization, reference=reference,
        name=_model_name(path, folder), path=folder, vae=vae, vae_config=vae_cfg, card=card,
    )
    return model.to(device)


def load_generative(path: str | Path, device: torch.device | str = "cpu") -> GenerativeModel:
    """:func:`load_model` for callers that sample or inpaint: refuses an enhancement or feature network.

    Raises:
        DataError: as :func:`load_model`, or ``path`` names a task network.
    """
    folder = model_folder(path)
    if (folder / "config.json").is_file():
        raise DataError(f"{path}: a {_task_of(folder)} network, not a generative model (a `medgen train` model "
                        "folder or 'ct-lesions')")
    return load_model(path, device)


def load_network(path: str | Path, task: str, device: torch.device | str = "cpu") -> TaskNetwork:
    """An enhancement or feature network (shipped name or folder) that does ``task``
    (``"denoise"``, ``"superres"``, ``"features"``).

    Raises:
        DataError: as :func:`load_model`, or the model does another task.
    """
    folder = model_folder(path)
    found = _task_of(folder) if (folder / "config.json").is_file() else "synthesis"
    if found != task:
        raise DataError(f"{path}: a {found} model, not a {task} network (`medgen models` lists the shipped ones)")
    return load_task_network(folder, _model_name(path, folder)).to(device)


@dataclass
class ModelInfo:
    """A model folder as :func:`model_info` describes it, from its config and card files (no weights loaded).

    Attributes:
        task: ``"synthesis"`` (a generative model), ``"denoise"``, ``"superres"`` or ``"features"``.
        size_bytes: all files of the folder, on disk.
        grid: voxels ``[X, Y, Z]`` the model works on (feature network: scans are resized to it); None: any.
        spacing: voxel size in mm the model works at; None: any.
        factors: up-sampling factors of a super-resolution network; None otherwise.
        metrics: the card's headline metrics (``card.json``: ``metrics``; how measured: ``metrics_source``).
    """

    name: str
    task: str
    path: Path
    size_bytes: int
    description: str = ""
    grid: list[int] | None = None
    spacing: list[float] | None = None
    factors: list[int] | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    metrics_source: str = ""

    @property
    def size_mb(self) -> float:
        return self.size_bytes / 1e6

    def to_json(self) -> dict[str, Any]:
        """Plain JSON types (``path`` as a string, ``size_mb`` added)."""
        return {**self.__dict__, "path": str(self.path), "size_mb": round(self.size_mb, 3)}


def model_info(path: str | Path) -> ModelInfo:
    """What a model folder or shipped name is: task, size on disk, grid, spacing, headline metrics.

    Raises:
        DataError: no such folder or shipped name, or its config/card files are unreadable.
    """
    folder = model_folder(path)
    if not (folder / "model.safetensors").is_file():
        raise DataError(f"{folder}: not a medgen model folder (missing model.safetensors)")
    card = read_json(folder / "card.json") if (folder / "card.json").is_file() else {}
    info = ModelInfo(
        name=_model_name(path, folder), task="synthesis", path=folder.resolve(),
        size_bytes=sum(f.stat().st_size for f in folder.rglob("*") if f.is_file()),
        description=str(card.get("description", "")), metrics=dict(card.get("metrics", {})),
        metrics_source=str(card.get("metrics_source", "")),
    )
    if (folder / "config.json").is_file():
        config = read_json(folder / "config.json")
        info.task, info.grid, info.factors = _task_of(folder), config.get("input_size"), config.get("factors")
    elif (folder / "reference.json").is_file():
        reference = read_json(folder / "reference.json")
        info.grid, info.spacing = reference.get("shape"), reference.get("spacing")
    return info


def list_models() -> list[ModelInfo]:
    """Every shipped model (:func:`shipped_models`), as :func:`model_info` describes it."""
    return [model_info(name) for name in shipped_models()]


def _task_of(folder: Path) -> str:
    architecture = read_json(folder / "config.json").get("architecture")
    if architecture not in ARCHITECTURES:
        raise DataError(f"{folder / 'config.json'}: key 'architecture': {architecture!r} is not one of "
                        f"{', '.join(ARCHITECTURES)}")
    return ARCHITECTURES[architecture][0]


def _model_name(path: str | Path, folder: Path) -> str:
    if folder != Path(path):  # a built-in model
        return str(path)
    return folder.resolve().name if folder.name != "model" else folder.resolve().parent.name


def _contiguous(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().contiguous() for k, v in state.items()}
