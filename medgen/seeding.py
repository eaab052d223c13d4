"""Seeded work that leaves the caller's random state alone.

Library calls that draw random numbers through the global generators (a fresh network's initial
weights, a DataLoader's shuffle, MONAI transforms seeded by its DataLoader) run inside
:func:`seeded`: Python's, NumPy's and torch's global states are seeded from ``seed`` for the block
and restored afterwards, so ``torch.rand(1)`` after a call to ``denoise`` gives what it would have
given without the call, and the call gives the same result whatever the caller drew before it.

Example:
    >>> import torch
    >>> with seeded(0):
    ...     a = torch.rand(1)
    >>> with seeded(0):
    ...     b = torch.rand(1)
    >>> bool(a == b)
    True
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import Iterator

import numpy as np
import torch


@contextlib.contextmanager
def seeded(seed: int, device: torch.device | str | None = None) -> Iterator[None]:
    """Seed Python, NumPy and torch (CPU, and ``device`` when it is a CUDA device) with ``seed`` for
    the ``with`` block, then restore the states the caller had."""
    device = torch.device(device) if device is not None else None
    cuda = [] if device is None or device.type != "cuda" else [device.index or 0]
    py_state, np_state = random.getstate(), np.random.get_state()
    with torch.random.fork_rng(devices=cuda):
        random.seed(seed)
        np.random.seed(seed % 2**32)
        torch.random.default_generator.manual_seed(seed)
        for index in cuda:
            with torch.cuda.device(index):
                torch.cuda.manual_seed(seed)
        try:
            yield
        finally:
            random.setstate(py_state)
            np.random.set_state(np_state)
