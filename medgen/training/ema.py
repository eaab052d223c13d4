"""Exponential moving average of a network's weights (the weights a finished model samples with)."""

from __future__ import annotations

import copy

import torch
from torch import nn


class EMA:
    """Keeps ``shadow = decay * shadow + (1 - decay) * weights`` after each optimizer step.

    The effective decay warms up as ``min(decay, (1 + step) / (10 + step))`` so early averages are
    not dominated by the random initialisation. Buffers are copied, not averaged.
    """

    def __init__(self, module: nn.Module, decay: float) -> None:
        self.decay = decay
        self.shadow = copy.deepcopy(module).eval().requires_grad_(False)

    @torch.no_grad()
    def update(self, module: nn.Module, step: int) -> None:
        decay = min(self.decay, (1 + step) / (10 + step))
        for s, p in zip(self.shadow.parameters(), module.parameters()):
            s.lerp_(p.detach(), 1.0 - decay)
        for s, b in zip(self.shadow.buffers(), module.buffers()):
            s.copy_(b)
