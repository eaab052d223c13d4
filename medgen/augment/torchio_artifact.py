"""MR artefacts MONAI lacks (motion, ghosting), taken from TorchIO and seeded the MONAI way.

MONAI's own ``RandTorchIO``/``RandTorchIOd`` wrappers run a TorchIO random transform as is: TorchIO
draws from torch's *global* generator, the wrappers have no ``set_random_state`` (so neither
``Compose``, ``set_determinism``'s per-transform seeds nor MONAI's ``DataLoader`` worker seeding
reach them), and ``RandomMotion`` returns a plain tensor, dropping the ``MetaTensor`` metadata.

:class:`RandTorchIOArtifact` keeps TorchIO's physics (it calls TorchIO through MONAI's
:class:`monai.transforms.TorchIO` wrapper) but draws one seed from its own ``self.R`` per call and
runs TorchIO inside a forked torch RNG seeded with it: the global generator is untouched, the draw
is reproducible, and the result keeps the input's metadata and trace.

Physics of the two presets used by :class:`~medgen.augment.RandMRArtifacts`:

- ``RandomMotion``: the head takes a few rigid poses during the scan; k-space is assembled from
  the Fourier transforms of the moved images, giving ringing and blurring along the phase direction.
- ``RandomGhosting``: periodic signal modulation in k-space (breathing, pulsation) repeats faint
  copies of the anatomy along the phase-encoding axis.

>>> motion = RandTorchIOArtifact("RandomMotion", prob=0.5, degrees=5, translation=5)   # doctest: +SKIP
>>> motion.set_random_state(seed=0)(scan).shape                                       # doctest: +SKIP
torch.Size([1, 66, 78, 63])
"""

from __future__ import annotations

from typing import Any

import torch

from medgen.augment._base import SeededRandomTransform, SeededRandomTransformd, like_input
from medgen.errors import ConfigError


def has_torchio() -> bool:
    """True when TorchIO is importable (it is an optional dependency of medgen)."""
    try:
        import torchio  # noqa: F401
    except ImportError:
        return False
    return True


class RandTorchIOArtifact(SeededRandomTransform):
    """Apply the TorchIO random transform ``name`` with probability ``prob``, seeded by ``self.R``.

    Args:
        name: a TorchIO random transform, e.g. ``"RandomMotion"``, ``"RandomGhosting"``,
            ``"RandomSpike"``.
        prob: probability of applying it.
        **kwargs: the TorchIO transform's arguments (e.g. ``degrees``, ``translation`` in mm,
            ``num_ghosts``, ``intensity``).

    Input/output: ``(C, X, Y, Z)`` tensor or MetaTensor, same units and dtype.
    """

    def __init__(self, name: str, prob: float = 1.0, **kwargs: Any) -> None:
        super().__init__(prob)
        if not has_torchio():
            raise ConfigError(f"augment '{name}': TorchIO is not installed; `pip install torchio` or disable it")
        from monai.transforms import TorchIO

        self.name = name
        self.kwargs = dict(kwargs)
        self.trans = TorchIO(name, **kwargs)

    def apply(self, img: torch.Tensor, seed: int) -> tuple[torch.Tensor, dict[str, Any]]:
        data = torch.as_tensor(img).detach().cpu().float()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            out = self.trans(data)
        out = torch.as_tensor(out).to(device=torch.as_tensor(img).device)
        return like_input(out, img), {"torchio": self.name}


class RandTorchIOArtifactd(SeededRandomTransformd):
    """Dictionary twin of :class:`RandTorchIOArtifact`: ``RandTorchIOArtifactd(keys, name, prob, **kwargs)``.

    Every key gets the same draw (same motion trajectory for co-registered images).
    """

    array_class = RandTorchIOArtifact

    def __init__(self, keys, name: str, prob: float = 1.0, allow_missing_keys: bool = False, **kwargs: Any):
        super().__init__(keys, prob=prob, allow_missing_keys=allow_missing_keys, name=name, **kwargs)
