"""Smooth random diffeomorphic deformations: a subject's anatomy from the template's.

A subject is the template seen through a sampling map ``p(x)`` (voxel coordinates, output grid →
template grid)::

    p(x) = c + A (x + u(x) - c) + t,      u = exp(v)  (scaling and squaring)

- ``A = (R S)^-1``: head size and shape (per-axis scale ``S``, ~3 % spread) and pose (rotation ``R``,
  a few degrees); ``c`` the brain's centre, ``t`` a small shift (mm).
- ``v``: a stationary velocity field, the sum of a smooth random field (Gaussian-smoothed white
  noise, ~15 mm correlation length) and a ventricle term ``beta * grad(G * ventricles)`` that
  enlarges (``beta > 0``) or shrinks the ventricles as ageing and atrophy do.
- ``u``: the displacement of ``exp(v)``, integrated by scaling and squaring (MONAI's
  :class:`~monai.networks.blocks.DVF2DDF`). The exponential of a smooth velocity is a
  diffeomorphism, so ``det(Dp) = det(A) det(I + Du) > 0`` everywhere; :func:`jacobian_determinant`
  checks it.

The velocity is integrated on a coarse grid (~6 mm) and the displacement upsampled trilinearly, so a
1 mm subject costs one ``grid_sample`` at full resolution (bilinear for intensities and probability
maps).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from monai.networks.blocks import DVF2DDF
from monai.networks.layers import GaussianFilter

COARSE_MM = 6.0  # spacing of the grid the velocity is integrated on
SQUARING_STEPS = 7


@dataclass(frozen=True)
class DeformationParams:
    """Random parameters of one subject's deformation (drawn by :meth:`draw`)."""

    scale: tuple[float, float, float]  # subject size / template size per axis
    rotation_deg: tuple[float, float, float]
    shift_mm: tuple[float, float, float]
    local_mm: float  # RMS of the smooth random velocity (mm)
    smooth_mm: float  # correlation length (Gaussian sigma) of the random velocity
    ventricle_mm: float  # ventricle expansion: peak velocity of the ventricle term (mm); < 0 shrinks
    noise_seed: int

    @classmethod
    def draw(cls, rng: np.random.Generator, *, strength: float = 1.0) -> DeformationParams:
        """Draw parameters; ``strength`` scales every spread (0 = identity, 1 = adult-cohort-like)."""
        head = math.exp(rng.normal(0.0, 0.025 * strength))  # 2.5 % head-size spread → ~8 % volume spread
        scale = tuple(float(head * math.exp(rng.normal(0.0, 0.015 * strength))) for _ in range(3))
        return cls(
            scale=scale,
            rotation_deg=tuple(float(v) for v in rng.normal(0.0, 3.0 * strength, 3)),
            shift_mm=tuple(float(v) for v in rng.normal(0.0, 2.0 * strength, 3)),
            local_mm=float(strength * rng.uniform(1.0, 2.5)),
            smooth_mm=float(rng.uniform(12.0, 20.0)),
            ventricle_mm=float(strength * rng.uniform(-2.0, 6.0)),
            noise_seed=int(rng.integers(2**31)),
        )


def sampling_positions(
    params: DeformationParams, shape: tuple[int, int, int], spacing_mm: float, ventricles: torch.Tensor,
    centre: tuple[float, float, float],
) -> torch.Tensor:
    """The sampling map ``p`` of ``params`` on a coarse (~``COARSE_MM``) grid spanning the output grid.

    Args:
        shape: output (= template) grid; ``spacing_mm``: its isotropic voxel size.
        ventricles: ``(X, Y, Z)`` float mask of the template's ventricles on that grid.
        centre: the brain's centre in voxels (the fixed point of scaling and rotation).

    Returns:
        ``(3, x, y, z)`` template voxel coordinates; coarse node ``j`` sits at output voxel
        ``j * (n - 1) / (m - 1)`` (corner-aligned), so :func:`dense_positions` upsamples it exactly
        for the affine part and smoothly for the rest.
    """
    coarse, step = _coarse_grid(shape, spacing_mm)
    step_t = torch.as_tensor(step).view(3, 1, 1, 1)
    gen = torch.Generator().manual_seed(params.noise_seed)
    velocity_mm = smooth_random_field(coarse, params.smooth_mm / COARSE_MM, gen) * params.local_mm
    if params.ventricle_mm != 0.0:
        vent = F.interpolate(ventricles[None, None].float(), size=coarse, mode="trilinear", align_corners=True)[0, 0]
        velocity_mm = velocity_mm + ventricle_velocity(vent, sigma_vox=6.0 / COARSE_MM) * params.ventricle_mm
    u = integrate_velocity(velocity_mm / (step_t * spacing_mm)) * step_t  # output voxels
    grid = _identity(coarse) * step_t  # coarse nodes in output voxels
    linear = torch.as_tensor(_inverse_linear(params), dtype=torch.float32)
    c = torch.as_tensor(centre, dtype=torch.float32).view(3, 1, 1, 1)
    shift = torch.as_tensor(params.shift_mm, dtype=torch.float32).view(3, 1, 1, 1) / spacing_mm
    return c + torch.einsum("ij,j...->i...", linear, grid + u - c) + shift


def dense_positions(positions: torch.Tensor, shape: tuple[int, int, int]) -> torch.Tensor:
    """Upsample corner-aligned ``positions`` ``(3, x, y, z)`` to the output grid ``(3, *shape)``."""
    if tuple(positions.shape[1:]) == tuple(shape):
        return positions
    return F.interpolate(positions[None], size=shape, mode="trilinear", align_corners=True)[0]


def displacement(positions: torch.Tensor, shape: tuple[int, int, int]) -> torch.Tensor:
    """Dense displacement ``p(x) - x`` ``(3, *shape)`` in voxels (for Jacobians and inspection)."""
    return dense_positions(positions, shape) - _identity(shape)


def smooth_random_field(
    shape: tuple[int, int, int], sigma_vox: float, generator: torch.Generator, channels: int = 3
) -> torch.Tensor:
    """White noise ``(channels, *shape)`` smoothed by a Gaussian of ``sigma_vox`` voxels, unit RMS.

    The noise is drawn on a grid ``sigma_vox / 2`` times coarser and upsampled (same statistics at
    a fraction of the cost: the smoothing removes what the coarse grid cannot hold).
    """
    factor = max(1, int(sigma_vox // 2))
    small = tuple(max(2, -(-n // factor)) for n in shape)
    field = gaussian_smooth(torch.randn((channels, *small), generator=generator), sigma_vox / factor)
    if small != tuple(shape):
        field = F.interpolate(field[None], size=shape, mode="trilinear", align_corners=True)[0]
    return field / field.square().mean().sqrt().clamp(min=1e-8)


def gaussian_smooth(volume: torch.Tensor, sigma_vox: float | tuple[float, ...]) -> torch.Tensor:
    """Gaussian blur of ``volume`` ``(C, X, Y, Z)`` (MONAI's separable filter, truncated at 3 sigma)."""
    with torch.no_grad():
        return GaussianFilter(3, sigma=sigma_vox, truncated=3.0)(volume[None].float())[0]


def ventricle_velocity(ventricles: torch.Tensor, sigma_vox: float) -> torch.Tensor:
    """``grad(G_sigma * ventricles)`` ``(3, X, Y, Z)`` scaled to a peak length of 1 voxel.

    Sampling along the gradient pulls ventricle (CSF) values outwards: the ventricles grow.
    """
    smooth = gaussian_smooth(ventricles[None], sigma_vox)[0]
    grad = torch.stack(torch.gradient(smooth))
    return grad / grad.norm(dim=0).max().clamp(min=1e-8)


def integrate_velocity(velocity: torch.Tensor, steps: int = SQUARING_STEPS) -> torch.Tensor:
    """Displacement ``(3, X, Y, Z)`` of ``exp(velocity)`` by scaling and squaring (voxel units)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # MONAI: "using PyTorch native grid_sample"
        layer = DVF2DDF(num_steps=steps, mode="bilinear", padding_mode="border")
    return layer(velocity[None])[0]


def warp(volume: torch.Tensor, positions: torch.Tensor, mode: str = "bilinear") -> torch.Tensor:
    """Resample ``volume`` ``(C, X, Y, Z)`` at ``positions`` (voxel coordinates, any corner-aligned
    grid, upsampled to ``(X, Y, Z)``); outside the volume is 0.

    Equivalent to MONAI's ``Warp`` with ``ddf = positions - x``, but the normalised grid is built on
    the coarse grid and upsampled once, which keeps a 1 mm warp to a single ``grid_sample``.
    """
    shape = tuple(volume.shape[1:])
    scale = torch.as_tensor([2.0 / max(n - 1, 1) for n in shape]).view(3, 1, 1, 1)
    grid = dense_positions(positions * scale - 1.0, shape)
    grid = grid.flip(0).permute(1, 2, 3, 0)[None]  # grid_sample wants (x_W, y_H, z_D) = our (k, j, i)
    data = torch.as_tensor(volume, dtype=torch.float32)[None]
    return F.grid_sample(data, grid, mode=mode, padding_mode="zeros", align_corners=True)[0]


def jacobian_determinant(displacement: torch.Tensor) -> torch.Tensor:
    """``det(I + D displacement)`` ``(X, Y, Z)`` by central differences; > 0 means invertible."""
    grads = [torch.stack(torch.gradient(displacement[i])) for i in range(3)]  # grads[i][j] = d u_i / d x_j
    jac = torch.stack(grads).permute(2, 3, 4, 0, 1) + torch.eye(3)
    return torch.linalg.det(jac)


def _identity(shape: tuple[int, int, int]) -> torch.Tensor:
    """Voxel coordinates ``(3, *shape)`` of a grid."""
    return torch.stack(torch.meshgrid(*[torch.arange(n, dtype=torch.float32) for n in shape], indexing="ij"))


def _coarse_grid(shape: tuple[int, int, int], spacing_mm: float) -> tuple[tuple[int, int, int], np.ndarray]:
    """A grid of ~``COARSE_MM`` spacing spanning the same extent (corner-aligned) and its step in
    output voxels per coarse voxel along each axis."""
    coarse = tuple(max(4, round((n - 1) * spacing_mm / COARSE_MM) + 1) for n in shape)
    step = np.array([(n - 1) / (m - 1) for n, m in zip(shape, coarse)], dtype=np.float32)
    return coarse, step


def _inverse_linear(params: DeformationParams) -> np.ndarray:
    """``(R S)^-1``: maps a subject's voxel offsets from the centre back to the template's."""
    rx, ry, rz = np.deg2rad(params.rotation_deg)
    rot_x = np.array([[1, 0, 0], [0, math.cos(rx), -math.sin(rx)], [0, math.sin(rx), math.cos(rx)]])
    rot_y = np.array([[math.cos(ry), 0, math.sin(ry)], [0, 1, 0], [-math.sin(ry), 0, math.cos(ry)]])
    rot_z = np.array([[math.cos(rz), -math.sin(rz), 0], [math.sin(rz), math.cos(rz), 0], [0, 0, 1]])
    return np.linalg.inv(rot_z @ rot_y @ rot_x @ np.diag(params.scale))
