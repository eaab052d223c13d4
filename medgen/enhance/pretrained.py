"""The shipped denoiser and super-resolution networks, by name or model folder.

A model is a *shipped name* (``denoiser3d``, ``superres2d``, ``superres2d-gan``; ``medgen models``
lists them) or a *folder* in the same layout, which ``scripts/train_denoiser.py`` and
``scripts/train_superres.py`` write: ``model.safetensors`` + ``config.json`` (architecture, sizes,
normalisation, factors) + ``card.json`` and ``model_card.md`` (data, training record, metrics); see
:mod:`medgen.models.task_network`. Weights are stored as float16 (half the size) and loaded as float32.
Nothing is ever downloaded.
"""

from __future__ import annotations

from pathlib import Path

from medgen.errors import ConfigError, DataError
from medgen.models.hub import load_network
from medgen.models.task_network import TaskNetwork

DEFAULT_DENOISER = "denoiser3d"
DEFAULT_SUPERRES = "superres2d"
GAN_SUPERRES = "superres2d-gan"


def _load(model: str | Path, task: str) -> TaskNetwork:
    try:
        return load_network(model, task)
    except DataError as err:
        raise ConfigError(f"key 'model': {err}") from None


def load_denoiser(model: str | Path = DEFAULT_DENOISER) -> TaskNetwork:
    """A :class:`~medgen.models.enhancers.Denoiser3d` model: ``.network`` (eval mode, float32, CPU),
    ``.config``, ``.card`` (``card["name"]`` goes into the provenance of its outputs).

    Args:
        model: shipped name (default ``"denoiser3d"``) or a model folder.

    Raises:
        ConfigError: naming ``model`` when it is not found, unreadable or not a denoiser.
    """
    return _load(model, "denoise")


def load_superres(model: str | Path = DEFAULT_SUPERRES) -> TaskNetwork:
    """A :class:`~medgen.models.enhancers.SliceSR2d` model; ``.config["factors"]`` are the up-sampling
    factors it was trained for.

    Args:
        model: shipped name (``"superres2d"``, ``"superres2d-gan"``) or a model folder.

    Raises:
        ConfigError: naming ``model`` when it is not found, unreadable or not a super-resolution network.
    """
    return _load(model, "superres")
