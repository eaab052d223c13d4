"""Start a run from a trained model's weights (``train.init_from``): fine-tuning and ControlNet recipes.

The standard ControlNet recipe (MONAI's generative tutorials): train the label-map branch on top of a
trained diffusion UNet, with the ControlNet's encoder starting as a copy of the UNet's encoder and its
zero-initialised output convolutions making step 0 exactly the trained unconditional model. Here that
is ``train.init_from: brain-rflow`` in a config with ``diffusion.label_classes``; the same key also
fine-tunes any model on new data (every tensor whose name and shape match is copied).
"""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import load_file
from torch import nn

from medgen.errors import ConfigError, DataError


def source_weights(source: str | Path) -> Path:
    """The ``model.safetensors`` of the model folder or shipped name ``source``.

    Raises:
        ConfigError: naming ``train.init_from``: no such model (the shipped names listed), or no weights file.
    """
    from medgen.models.hub import model_folder

    try:
        folder = model_folder(str(source))
    except DataError as err:
        raise ConfigError(f"key 'train.init_from': {err}") from None
    path = folder / "model.safetensors"
    if not path.is_file():
        raise ConfigError(f"key 'train.init_from': {folder} has no model.safetensors (not a medgen model folder)")
    return path


def init_from(network: nn.Module, source: str | Path) -> dict[str, int]:
    """Copy the weights of the model folder (or shipped name) ``source`` into ``network`` in place.

    Tensors are matched by name and must agree in shape; a ``control.*`` tensor (MONAI ``ControlNet``)
    the source lacks starts from the source UNet's tensor of the same name, as in the ControlNet recipe.
    Tensors found in neither keep their fresh initialisation (e.g. the ControlNet's zero convolutions).

    Returns:
        ``{"copied": n, "from_unet": n, "fresh": n}`` tensor counts.

    Raises:
        ConfigError: naming ``train.init_from``: no such model, not a safetensors model folder, a
            tensor of another shape, or no tensor in common with ``network``.
    """
    path = source_weights(source)
    try:
        stored = load_file(str(path))
    except Exception as err:  # noqa: BLE001 - any reader failure means the file is unusable
        raise ConfigError(f"key 'train.init_from': {path}: not a readable safetensors file ({err})") from None
    state = network.state_dict()
    counts = {"copied": 0, "from_unet": 0, "fresh": 0}
    new: dict[str, torch.Tensor] = {}
    for name, tensor in state.items():
        origin, kind = name, "copied"
        if name not in stored and name.startswith("control."):
            origin, kind = "unet." + name.removeprefix("control."), "from_unet"
        value = stored.get(origin)
        if value is None:
            counts["fresh"] += 1
            continue
        if tuple(value.shape) != tuple(tensor.shape):
            raise ConfigError(f"key 'train.init_from': {path}: tensor {origin} has shape {tuple(value.shape)}, "
                              f"this model's {name} has {tuple(tensor.shape)}; the model sections must match")
        new[name] = value.to(tensor.dtype)
        counts[kind] += 1
    if not counts["copied"]:
        raise ConfigError(f"key 'train.init_from': {path} shares no tensor with this model")
    network.load_state_dict(new, strict=False)
    return counts
