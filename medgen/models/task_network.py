"""Model folders of the enhancement and feature networks (denoiser, slice super-resolution, FID features).

Such a folder holds::

    model.safetensors   the weights (float16 for the enhancement networks: half the size; loaded as float32)
    config.json         what rebuilds and feeds the network: ``architecture``, ``network`` (the arguments of
                        its constructor) and the preprocessing it expects (``normalisation``, ``factors``,
                        ``input_size``)
    card.json           how it was made and how good it is, for code: ``name`` (recorded in the provenance
                        of its outputs), ``description``, ``training`` (data, steps, wall time, device,
                        command), ``metrics`` and where they come from, limitations, license
    model_card.md       the same card for people

It is the generative model folder of :mod:`medgen.models.hub` with ``config.json`` in place of
``config.yaml`` + ``normalization.json`` + ``reference.json``: these networks run on any grid and
normalise each scan by its own percentiles, so they carry no training geometry or unit mapping.
:func:`medgen.load_model` loads both kinds, by folder or by shipped name.

Example:
    >>> denoiser = medgen.load_model("denoiser3d")        # doctest: +SKIP
    >>> denoiser.task, denoiser.card["training"]["steps"]
    ('denoise', 6211)
"""

from __future__ import annotations

import json
import platform
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import monai
import torch
from safetensors.torch import save_file
from torch import nn

from medgen.errors import DataError
from medgen.models.enhancers import Denoiser3d, SliceSR2d
from medgen.models.features import FeatureNet3d
from medgen.models.weights_file import load_weights

ARCHITECTURES: dict[str, tuple[str, type[nn.Module]]] = {
    "Denoiser3d": ("denoise", Denoiser3d),
    "SliceSR2d": ("superres", SliceSR2d),
    "FeatureNet3d": ("features", FeatureNet3d),
}
"""``architecture`` of a ``config.json`` → ``(task, network class)``; a config names one of these, never code."""
MAX_SIZE = 4096
"""Largest channel count, block count or any other size a ``config.json`` may give a network."""


@dataclass
class TaskNetwork:
    """An enhancement or feature network, ready to run: network (eval mode, float32 on CPU), config, card.

    Attributes:
        name: the shipped name it was loaded by, else its folder's name.
        task: ``"denoise"`` (:class:`~medgen.models.enhancers.Denoiser3d`), ``"superres"``
            (:class:`~medgen.models.enhancers.SliceSR2d`) or ``"features"``
            (:class:`~medgen.models.features.FeatureNet3d`).
        config: ``config.json``: architecture, network sizes, preprocessing (``factors``, ``input_size``).
        card: ``card.json``: name, description, training record, metrics ({} if the folder has none).
        card_text: ``model_card.md`` ("" if absent), as :attr:`GenerativeModel.card`.
    """

    name: str
    task: str
    network: nn.Module
    config: dict[str, Any]
    path: Path
    card: dict[str, Any] = field(default_factory=dict)
    card_text: str = ""

    def to(self, device: torch.device | str) -> TaskNetwork:
        self.network.to(device)
        return self


def read_json(path: Path) -> dict[str, Any]:
    """A JSON object from ``path``; DataError naming the file if it is unreadable or not an object."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, ValueError) as err:
        raise DataError(f"{path}: not readable JSON ({str(err).splitlines()[0][:120]})") from None
    if not isinstance(data, dict):
        raise DataError(f"{path}: expected a JSON object, got {type(data).__name__}")
    return data


def load_task_network(folder: str | Path, name: str | None = None) -> TaskNetwork:
    """Load a task-network folder (``config.json`` + ``model.safetensors`` [+ ``card.json``, ``model_card.md``]).

    The network is first sized on the ``meta`` device, so a config asking for more values than its
    file holds fails before anything is allocated; the weights are then checked against the network
    through the safetensors header (:func:`~medgen.models.weights_file.load_weights`).

    Raises:
        DataError: a file is missing or unreadable, the architecture is unknown, or config and weights disagree.
    """
    folder = Path(folder)
    config_path, weights = folder / "config.json", folder / "model.safetensors"
    for path in (config_path, weights):
        if not path.is_file():
            raise DataError(f"{folder}: not a medgen model folder (missing {path.name})")
    config = read_json(config_path)
    architecture = config.get("architecture")
    if architecture not in ARCHITECTURES:
        raise DataError(f"{config_path}: key 'architecture': {architecture!r} is not one of {', '.join(ARCHITECTURES)}")
    kwargs = config.get("network", {})
    if not isinstance(kwargs, dict):
        raise DataError(f"{config_path}: key 'network': expected an object of constructor arguments")
    for key, value in kwargs.items():  # a network of 10^9 blocks would hang before any weight is read
        sizes = value if isinstance(value, list) else [value]
        if len(sizes) > 16 or not all(isinstance(v, int) and 1 <= v <= MAX_SIZE for v in sizes):
            raise DataError(f"{config_path}: key 'network.{key}': expected sizes from 1 to {MAX_SIZE}, got {value}")
    task, cls = ARCHITECTURES[architecture]
    try:
        with torch.device("meta"):
            values = sum(t.numel() for t in cls(**kwargs).state_dict().values())
    except (TypeError, ValueError, RuntimeError) as err:
        raise DataError(f"{config_path}: key 'network': {str(err).splitlines()[0][:120]}") from None
    if values > weights.stat().st_size:  # every stored value takes a byte or more: the config asks for too much
        raise DataError(f"{weights}: weights do not match config.json (its network has {values} values, more "
                        f"than the file's {weights.stat().st_size} bytes)")
    # float16 files load into the float32 network (load_state_dict converts exactly)
    network = load_weights(cls(**kwargs), weights, "config.json")
    card_path, text_path = folder / "card.json", folder / "model_card.md"
    return TaskNetwork(
        name=name or folder.resolve().name, task=task, network=network.eval(), config=config, path=folder,
        card=read_json(card_path) if card_path.is_file() else {},
        card_text=text_path.read_text() if text_path.is_file() else "",
    )


def write_task_network(
    folder: str | Path, *, network: nn.Module, config: dict[str, Any], card: dict[str, Any],
    half: bool = True, overwrite: bool = False,
) -> Path:
    """Write a task-network folder atomically (it appears whole or not at all); ``model_card.md`` is
    rendered from ``card`` and ``config``. ``half`` stores floating-point weights as float16.

    Raises:
        ScanWriteError: ``folder`` exists and ``overwrite`` is False.
    """
    from medgen.io.atomic import atomic_path  # keeps `import medgen.models` free of the scan readers

    if config.get("architecture") not in ARCHITECTURES:
        raise DataError(f"key 'architecture': {config.get('architecture')!r} is not one of {', '.join(ARCHITECTURES)}")
    tensors = {k: (v.detach().half() if half and v.is_floating_point() else v.detach()).cpu().contiguous()
               for k, v in network.state_dict().items()}
    with atomic_path(folder, overwrite=overwrite, is_dir=True) as tmp:
        save_file(tensors, str(tmp / "model.safetensors"),
                  metadata={"format": "pt", "architecture": config["architecture"]})
        (tmp / "config.json").write_text(json.dumps(config, indent=2) + "\n")
        (tmp / "card.json").write_text(json.dumps(card, indent=2) + "\n")
        (tmp / "model_card.md").write_text(card_markdown(card, config, Path(folder).name))
    return Path(folder)


def training_record(device: str, start: float) -> dict[str, Any]:
    """What a card records of the run that trained it: device, wall time, versions, command line."""
    return {
        "device": torch.cuda.get_device_name() if device.startswith("cuda") else "cpu",
        "wall_time_s": round(time.time() - start, 1),
        "torch": torch.__version__, "monai": monai.__version__, "python": platform.python_version(),
        "command": " ".join(["python", *sys.argv]),
    }


def card_markdown(card: dict[str, Any], config: dict[str, Any], name: str) -> str:
    """``model_card.md`` of a task network (folder ``name``): what it does, data, training run, metrics, limits."""
    t = card.get("training", {})
    lines = [f"# {card.get('name', 'model')}: {card.get('description', config.get('architecture', ''))}", ""]
    net = ", ".join(f"{k} {v}" for k, v in config.get("network", {}).items())
    lines.append(f"- network: `{config.get('architecture')}` ({net})" + (
        f", {card['parameters'] / 1e6:.2f} M parameters" if "parameters" in card else ""))
    for key in ("normalisation", "preprocessing", "factors", "input_size"):
        if key in config:
            lines.append(f"- {key.replace('_', ' ')}: {config[key]}")
    if "data" in t:
        lines.append(f"- data: {t['data']}")
    run = ", ".join(f"{k} {t[k]}" for k in ("steps", "batch", "crop", "lr", "seed", "loss") if t.get(k) is not None)
    lines.append(f"- training: {run}")
    wall = f"{t['wall_time_s']:.0f} s" if isinstance(t.get("wall_time_s"), (int, float)) else "not recorded"
    lines.append(f"- wall time: {wall} on {t.get('device') or 'a device not recorded'}"
                 + (" (bf16 autocast)" if t.get("amp") else ""))
    lines.append(f"- command: `{t['command']}`" if t.get("command") else "- command: not recorded")
    versions = ", ".join(f"{k} {t[k]}" for k in ("torch", "monai", "python") if t.get(k))
    if versions:
        lines.append(f"- versions: {versions}")
    if card.get("metrics"):
        lines += ["", "## Metrics", ""]
        lines += [f"- {k}: {v:.4g}" if isinstance(v, float) else f"- {k}: {v}" for k, v in card["metrics"].items()]
        if card.get("metrics_source"):
            lines += ["", card["metrics_source"]]
    for key in ("notes", "limitations"):
        if card.get(key):
            lines += ["", f"## {key.capitalize()}", "", card[key]]
    if card.get("license"):
        lines += ["", f"License: {card['license']}."]
    lines += ["", f'Load with `medgen.load_model("{name}")` where it ships with medgen, else with its folder\'s path.']
    return "\n".join(lines) + "\n"
