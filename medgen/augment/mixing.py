"""Serve real and synthetic cases at a chosen ratio, deterministic by seed and epoch.

:class:`MixedDataset` is an epoch of ``length`` items, of which ``round(synthetic_fraction * length)``
come from the synthetic dataset; which items, and which case each one is, follow a plan drawn from
``(seed, epoch)`` alone, so the same seed gives the same epoch with any number of DataLoader workers.
Each source is walked through a fresh permutation per epoch (every case is used before any repeats).

>>> mixed = MixedDataset(real_ds, SyntheticPoolDataset("pool/"), synthetic_fraction=0.5, seed=0)  # doctest: +SKIP
>>> for epoch in range(n_epochs):                                                                   # doctest: +SKIP
...     mixed.set_epoch(epoch)
...     for batch in DataLoader(mixed, batch_size=2, shuffle=False, num_workers=2): ...
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from medgen.errors import ConfigError


class MixedDataset(torch.utils.data.Dataset):
    """Real and synthetic cases mixed at ``synthetic_fraction`` (see module docstring).

    Args:
        real, synthetic: map-style datasets (or lists) of cases; their transforms are their own.
        synthetic_fraction: share of each epoch drawn from ``synthetic``, in ``[0, 1]``.
        length: items per epoch (default: ``len(real)`` scaled up so real cases appear once:
            ``ceil(len(real) / (1 - fraction))``, or ``len(synthetic)`` when the fraction is 1).
        seed: the plan's seed.

    Each item is the source's item; dict items get ``"synthetic"``: True/False added.
    """

    def __init__(self, real: Sequence, synthetic: Sequence, synthetic_fraction: float = 0.5,
                 length: int | None = None, seed: int = 0) -> None:
        if not 0.0 <= synthetic_fraction <= 1.0:
            raise ConfigError(f"key 'synthetic_fraction': must be in [0, 1], got {synthetic_fraction}")
        if synthetic_fraction < 1.0 and len(real) == 0:
            raise ConfigError("key 'real': no real cases to mix")
        if synthetic_fraction > 0.0 and len(synthetic) == 0:
            raise ConfigError("key 'synthetic': no synthetic cases to mix")
        self.real, self.synthetic, self.fraction, self.seed = real, synthetic, synthetic_fraction, seed
        if length is None:
            length = len(synthetic) if synthetic_fraction == 1.0 else int(np.ceil(len(real) / (1 - synthetic_fraction)))
        self.length = int(length)
        self.set_epoch(0)

    def set_epoch(self, epoch: int) -> None:
        """Draw the plan of ``epoch``: which items are synthetic and which case each one is."""
        rng = np.random.default_rng([self.seed, epoch])
        n_syn = int(round(self.fraction * self.length))
        is_syn = np.zeros(self.length, dtype=bool)
        is_syn[rng.permutation(self.length)[:n_syn]] = True
        self.epoch = epoch
        self.plan = np.zeros((self.length, 2), dtype=np.int64)  # (source, index): 0 real, 1 synthetic
        for source, data, mask in ((0, self.real, ~is_syn), (1, self.synthetic, is_syn)):
            count = int(mask.sum())
            if count:
                reps = int(np.ceil(count / len(data)))
                order = np.concatenate([rng.permutation(len(data)) for _ in range(reps)])[:count]
                self.plan[mask] = np.stack([np.full(count, source), order], axis=1)

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> Any:
        source, i = self.plan[index]
        item = (self.synthetic if source else self.real)[int(i)]
        if isinstance(item, dict):
            item = {**item, "synthetic": bool(source)}
        return item
