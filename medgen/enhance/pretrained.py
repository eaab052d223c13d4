"""Ship and load the pretrained enhancement networks: safetensors weights plus a JSON model card.

A model is either a *name* shipped in ``medgen/weights/`` (``NAME.safetensors`` + ``NAME.json``) or a
*folder* holding ``model.safetensors`` + ``config.json`` (what ``scripts/train_denoiser.py --out DIR``
writes). The card records the architecture, the intensity normalisation and how the weights were
trained (data, noise, steps, seed, script), so a model loads with one call and explains itself.
Weights are stored as float16 (half the size) and loaded as float32. Nothing is ever downloaded.
"""

from __future__ import annotations

import json
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import monai
import torch
from safetensors.torch import load_file, save_file

from medgen.enhance.networks import Denoiser3d, SliceSR2d
from medgen.errors import ConfigError
from medgen.io.atomic import atomic_path

WEIGHTS_DIR = Path(__file__).resolve().parents[1] / "weights"
DEFAULT_DENOISER = "denoiser3d"
DEFAULT_SUPERRES = "superres2d"
GAN_SUPERRES = "superres2d-gan"


def model_files(model: str | Path) -> tuple[Path, Path]:
    """``(weights, card)`` paths of a shipped model name, a model folder, or a ``.safetensors`` file.

    Raises:
        ConfigError: naming ``--model`` when nothing usable is found.
    """
    p = Path(model)
    if p.is_dir():
        weights, card = p / "model.safetensors", p / "config.json"
    elif p.suffix == ".safetensors":
        weights, card = p, p.with_suffix(".json")
    else:
        weights, card = WEIGHTS_DIR / f"{model}.safetensors", WEIGHTS_DIR / f"{model}.json"
    if not weights.is_file() or not card.is_file():
        shipped = sorted(w.stem for w in WEIGHTS_DIR.glob("*.safetensors"))
        raise ConfigError(
            f"key 'model': '{model}' is neither a shipped model ({', '.join(shipped) or 'none'}) nor a folder "
            "with model.safetensors + config.json"
        )
    return weights, card


def save_model(net: torch.nn.Module, card: dict[str, Any], weights: Path, card_path: Path, *, overwrite: bool) -> None:
    """Write ``net``'s parameters (float16 safetensors) and ``card`` (JSON) atomically."""
    tensors = {k: v.detach().to(torch.float16).contiguous() for k, v in net.state_dict().items()}
    with atomic_path(weights, overwrite=overwrite) as tmp:
        save_file(tensors, str(tmp), metadata={"format": "pt", "architecture": str(card.get("architecture"))})
    with atomic_path(card_path, overwrite=overwrite) as tmp:
        tmp.write_text(json.dumps(card, indent=2) + "\n")


def _load(model: str | Path, architecture: str, build: Callable[[dict], torch.nn.Module]
          ) -> tuple[torch.nn.Module, dict[str, Any]]:
    weights, card_path = model_files(model)
    try:
        card = json.loads(card_path.read_text())
    except (ValueError, OSError) as err:
        raise ConfigError(f"key 'model': {card_path} is not a readable model card ({err})") from None
    if card.get("architecture") != architecture:
        raise ConfigError(f"key 'model': {card_path} describes a {card.get('architecture')!r}, not a {architecture}")
    try:
        net = build(card)
        net.load_state_dict({k: v.float() for k, v in load_file(str(weights)).items()})
    except (KeyError, ValueError, RuntimeError, OSError) as err:
        problem = str(err).splitlines()[0][:120] if str(err) else type(err).__name__
        raise ConfigError(f"key 'model': {weights} is not a medgen {architecture} ({problem})") from None
    return net.eval(), card


def training_record(device: str, start: float) -> dict[str, Any]:
    """What a model card records of the run that trained it: device, wall time, versions, command line."""
    return {
        "device": torch.cuda.get_device_name() if device.startswith("cuda") else "cpu",
        "wall_time_s": round(time.time() - start, 1),
        "torch": torch.__version__, "monai": monai.__version__, "python": platform.python_version(),
        "command": " ".join(["python", *sys.argv]),
    }


def load_denoiser(model: str | Path = DEFAULT_DENOISER) -> tuple[Denoiser3d, dict[str, Any]]:
    """Load a :class:`Denoiser3d` and its card (eval mode, float32, CPU).

    Args:
        model: shipped name (default ``"denoiser3d"``), a model folder, or a ``.safetensors`` file.
    """
    return _load(model, "Denoiser3d", lambda card: Denoiser3d(features=tuple(card["features"])))


def load_superres(model: str | Path = DEFAULT_SUPERRES) -> tuple[SliceSR2d, dict[str, Any]]:
    """Load a :class:`SliceSR2d` and its card (``factors``: the up-sampling factors it was trained for).

    Args:
        model: shipped name (``"superres2d"``, ``"superres2d-gan"``), a model folder, or a ``.safetensors`` file.
    """
    return _load(model, "SliceSR2d", lambda card: SliceSR2d(int(card["channels"]), int(card["blocks"])))
