"""A model folder that loads lazily, once per process, on the right device, and pickles as its path.

Generative transforms travel to DataLoader workers (pickled, or forked); holding the network in the
transform would copy it into every worker's pickle and, with CUDA, break forked workers. So a
transform holds a :class:`LazyModel` (path + device) and calls :meth:`LazyModel.get` when it first
needs the network; the loaded model lives in a per-process cache keyed by (path, device), so all
transforms of one worker share one copy.

Device ``"auto"``: CUDA when available and usable in this process (the main process, or a worker
started with the ``spawn`` method: CUDA cannot be re-initialised in a forked child), else CPU.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

_CACHE: dict[tuple[str, str, int], Any] = {}


def resolve_device(device: str) -> str:
    """``"auto"`` → ``"cuda"`` or ``"cpu"`` for this process (see module docstring); others unchanged."""
    if device != "auto":
        return device
    if not torch.cuda.is_available():
        return "cpu"
    info = torch.utils.data.get_worker_info()
    if info is not None and torch.multiprocessing.get_start_method(allow_none=True) not in ("spawn", "forkserver"):
        return "cpu"
    return "cuda"


def load_model_api():
    """The model zoo's loader of generative models (``medgen.load_model`` refusing enhancement networks),
    imported only when a model is needed."""
    from medgen.models.hub import load_generative

    return load_generative


class LazyModel:
    """Path of a medgen model folder (``medgen.load_model``); :meth:`get` loads it once per process."""

    def __init__(self, path: str | Path, device: str = "auto") -> None:
        self.path = str(path)
        self.device = device

    def get(self) -> Any:
        """The loaded ``GenerativeModel`` (eval mode) on this process's device."""
        device = resolve_device(self.device)
        key = (str(Path(self.path).resolve()), device, os.getpid())
        if key not in _CACHE:
            _CACHE[key] = load_model_api()(self.path, device=device)
        return _CACHE[key]

    @property
    def loaded(self) -> bool:
        """Whether this process has loaded the model already."""
        return any(k[0] == str(Path(self.path).resolve()) and k[2] == os.getpid() for k in _CACHE)

    def __repr__(self) -> str:
        return f"LazyModel({self.path!r}, device={self.device!r})"
