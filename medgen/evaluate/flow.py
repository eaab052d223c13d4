"""A normalizing flow (RealNVP with Glow's ActNorm) that gives the exact likelihood of a vector.

A flow is an invertible map ``z = f(x)`` onto a standard normal, so by change of variables

    log p(x) = log N(f(x); 0, I) + log |det df/dx|.

Each :class:`AffineCoupling` keeps half of the coordinates ``x_a`` and transforms the other half as
``y_b = x_b * exp(s(x_a)) + t(x_a)`` (``s`` bounded by ``tanh``), whose log-determinant is just
``sum(s)``; a fixed random permutation between couplings lets every coordinate be transformed.
:class:`ActNorm` is a per-coordinate affine map initialised from the first batch (zero mean, unit
variance). Trained by maximum likelihood on real data (:func:`fit_flow`), ``-log p(x) / D`` (nats
per dimension) measures how atypical ``x`` is: :mod:`medgen.evaluate.qc` uses it on small patches
of scans. :func:`patches` cuts those vectors out of a volume.

>>> flow = RealNVP(dim=64)
>>> losses = fit_flow(flow, train_vectors, steps=300)            # doctest: +SKIP
>>> nll = -flow.log_prob(test_vectors) / 64                      # doctest: +SKIP
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from medgen.training.loop import Phase, cosine, fit


class ActNorm(nn.Module):
    """Per-coordinate ``y = (x - bias) * exp(-log_scale)``, initialised on the first batch seen."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(dim))
        self.log_scale = nn.Parameter(torch.zeros(dim))
        self.register_buffer("initialized", torch.tensor(False))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if not bool(self.initialized):
            with torch.no_grad():
                self.bias.copy_(x.mean(0))
                self.log_scale.copy_(torch.log(x.std(0) + 1e-6))
                self.initialized.fill_(True)
        y = (x - self.bias) * torch.exp(-self.log_scale)
        return y, (-self.log_scale).sum().expand(x.shape[0])

    def inverse(self, y: torch.Tensor) -> torch.Tensor:
        return y * torch.exp(self.log_scale) + self.bias


class AffineCoupling(nn.Module):
    """RealNVP coupling: ``y_a = x_a``, ``y_b = x_b * exp(s(x_a)) + t(x_a)`` with an MLP for ``s, t``."""

    def __init__(self, dim: int, hidden: int = 128) -> None:
        super().__init__()
        self.split = dim // 2
        self.net = nn.Sequential(
            nn.Linear(self.split, hidden), nn.GELU(), nn.Linear(hidden, hidden), nn.GELU(),
            nn.Linear(hidden, 2 * (dim - self.split)),
        )
        nn.init.zeros_(self.net[-1].weight)  # starts as the identity map
        nn.init.zeros_(self.net[-1].bias)
        self.scale = nn.Parameter(torch.ones(1))

    def _st(self, xa: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        s, t = self.net(xa).chunk(2, dim=1)
        return self.scale * torch.tanh(s), t

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        xa, xb = x[:, : self.split], x[:, self.split :]
        s, t = self._st(xa)
        return torch.cat([xa, xb * torch.exp(s) + t], dim=1), s.sum(1)

    def inverse(self, y: torch.Tensor) -> torch.Tensor:
        ya, yb = y[:, : self.split], y[:, self.split :]
        s, t = self._st(ya)
        return torch.cat([ya, (yb - t) * torch.exp(-s)], dim=1)


class RealNVP(nn.Module):
    """``n_couplings`` x (ActNorm, fixed permutation, AffineCoupling) on ``(B, dim)`` vectors.

    Args:
        dim: vector length ``D`` (e.g. 64 for a 4x4x4 patch, 128 for features).
        n_couplings: number of coupling layers (6-8 is plenty for patches).
        hidden: width of each coupling's MLP.
        seed: seeds the fixed permutations (the weights are seeded by the caller's torch seed).
    """

    def __init__(self, dim: int, n_couplings: int = 6, hidden: int = 128, seed: int = 0) -> None:
        super().__init__()
        self.dim = dim
        g = torch.Generator().manual_seed(seed)
        self.norms = nn.ModuleList(ActNorm(dim) for _ in range(n_couplings))
        self.couplings = nn.ModuleList(AffineCoupling(dim, hidden) for _ in range(n_couplings))
        for i in range(n_couplings):
            self.register_buffer(f"perm{i}", torch.randperm(dim, generator=g))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(z, log|det dz/dx|)`` for ``x`` of shape ``(B, D)``."""
        logdet = torch.zeros(x.shape[0], dtype=x.dtype, device=x.device)
        for i, (norm, coupling) in enumerate(zip(self.norms, self.couplings)):
            x, ld = norm(x)
            logdet = logdet + ld
            x, ld = coupling(x[:, getattr(self, f"perm{i}")])
            logdet = logdet + ld
        return x, logdet

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """Exact ``log p(x)`` in nats, shape ``(B,)``."""
        z, logdet = self(x)
        return -0.5 * (z**2).sum(1) - 0.5 * self.dim * math.log(2 * math.pi) + logdet

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """``n`` vectors drawn from the model, ``(n, D)``."""
        x = torch.randn(n, self.dim, generator=generator)
        for i in reversed(range(len(self.couplings))):
            x = self.couplings[i].inverse(x)
            x = x[:, torch.argsort(getattr(self, f"perm{i}"))]
            x = self.norms[i].inverse(x)
        return x


def fit_flow(
    flow: RealNVP, data: torch.Tensor, *, steps: int = 500, batch_size: int = 256, lr: float = 2e-3,
    jitter: float = 0.01, seed: int = 0,
) -> list[float]:
    """Maximum-likelihood training of ``flow`` on ``data`` ``(N, D)``; returns the loss (nats/dim) per step.

    ``jitter`` (Gaussian, in data units) is added to each batch so exactly repeated values (clipped
    background, quantised intensities) cannot make the density degenerate. Deterministic by ``seed``.
    """
    g = torch.Generator().manual_seed(seed)
    data = data.float()
    flow.train()
    with torch.no_grad():  # ActNorm initialisation on a large first batch
        flow(data[torch.randperm(len(data), generator=g)[: max(batch_size, 1024)]])

    def loss_at(step: int) -> torch.Tensor:
        x = data[torch.randint(len(data), (batch_size,), generator=g)]
        x = x + jitter * torch.randn(x.shape, generator=g)
        return -flow.log_prob(x).mean() / flow.dim

    return fit([Phase(flow, loss_at, lr=lr, grad_clip=10.0)], steps=steps, schedule=cosine()).losses["loss"]


def patches(
    volume: torch.Tensor, size: int = 4, stride: int | None = None, min_mean: float | None = None
) -> torch.Tensor:
    """Cubic patches of a ``(X, Y, Z)`` or ``(1, X, Y, Z)`` volume as vectors ``(N, size**3)``.

    Args:
        stride: step between patches (default ``size``: non-overlapping).
        min_mean: keep only patches whose mean exceeds it (e.g. to drop background); None keeps all.
    """
    v = volume.as_tensor() if hasattr(volume, "as_tensor") else torch.as_tensor(volume)
    v = v.float()
    v = v[0] if v.ndim == 4 else v
    stride = stride or size
    p = v.unfold(0, size, stride).unfold(1, size, stride).unfold(2, size, stride)
    p = p.reshape(-1, size**3)
    if min_mean is not None:
        p = p[p.mean(1) > min_mean]
    return p


def downsample(volume: torch.Tensor, factor: int) -> torch.Tensor:
    """Block-average a ``(1, X, Y, Z)`` volume by ``factor`` (1 = unchanged)."""
    v = volume.as_tensor() if hasattr(volume, "as_tensor") else torch.as_tensor(volume)
    if factor <= 1:
        return v.float()
    return F.avg_pool3d(v.float()[None], factor, ceil_mode=True)[0]
