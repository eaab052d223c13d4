"""Through-plane super-resolution learned from the scan itself (SMORE-like), with exact geometry.

Physics: a thick-slice scan samples the through-plane axis with a wide slice profile (here a box of
the slice thickness) but its in-plane axes are sharp. Blurring an in-plane axis with the same
profile and interpolating it back gives (degraded, sharp) pairs from the scan itself; a 2D network
trained on them learns to undo the slice profile and is then applied to the through-plane axis of
the cubic-interpolated volume, in the two planes that contain it, and the two results averaged
(Zhao et al., "SMORE", IEEE TMI 2021). No training set is needed.

Geometry: thick voxel ``k`` covers thin voxels ``kF .. kF+F-1``, so its centre sits at thin index
``kF + (F-1)/2``. Every resampling here uses that *area* convention (``scipy.ndimage.zoom`` with
``grid_mode=True``), and :func:`resampled_affine` gives the output affine
``A_out = A_in @ [diag(n_in/n_out), (n_in/n_out - 1)/2]``, so both grids span the same extent in
world space.

Example:
    >>> thin = superres(scan, factor=4, axis=2, steps=300)      # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
from scipy import ndimage

from medgen.enhance.networks import SliceSR2d
from medgen.errors import ConfigError
from medgen.io.meta import affine_of, like, spacing_from_affine
from medgen.io.provenance import mark

METHODS = ("auto", "smore", "cubic", "linear", "nearest")
_ORDERS = {"nearest": 0, "linear": 1, "cubic": 3}


def resampled_affine(affine: np.ndarray, shape_in: Sequence[int], shape_out: Sequence[int]) -> np.ndarray:
    """Affine of the grid of ``shape_out`` voxels covering the same extent as ``shape_in`` (area convention)."""
    scale = np.asarray(shape_in, float) / np.asarray(shape_out, float)
    m = np.eye(4)
    m[:3, :3] = np.diag(scale)
    m[:3, 3] = (scale - 1.0) / 2.0
    return np.asarray(affine, float) @ m


def resample(x: np.ndarray, shape_out: Sequence[int], order: int) -> np.ndarray:
    """Resample ``(X, Y, Z)`` to ``shape_out`` over the same extent (0 nearest, 1 linear, 3 cubic B-spline)."""
    zoom = [o / i for o, i in zip(shape_out, x.shape)]
    out = ndimage.zoom(x.astype(np.float32), zoom, order=order, mode="nearest", grid_mode=True)
    return out.astype(np.float32)


def thick_slices(x: np.ndarray, factor: int, axis: int) -> np.ndarray:
    """Box-average ``factor`` consecutive slices along ``axis`` (a thick-slice acquisition).

    The axis is first cut to a multiple of ``factor``. Returns float32 with ``n // factor`` slices.
    """
    n = x.shape[axis] - x.shape[axis] % factor
    x = np.moveaxis(np.take(x, np.arange(n), axis=axis), axis, 0)
    out = x.reshape(n // factor, factor, *x.shape[1:]).mean(1)
    return np.moveaxis(out, 0, axis).astype(np.float32)


def _degrade_rows(slices: np.ndarray, factor: int) -> np.ndarray:
    """Thick-sample the first axis of ``(N, H, W)`` slices (``H`` a multiple of ``factor``) and cubic it back."""
    thick = thick_slices(slices, factor, 1)
    return ndimage.zoom(thick, (1, factor, 1), order=3, mode="nearest", grid_mode=True).astype(np.float32)


def training_pairs(volume: np.ndarray, factor: int) -> tuple[np.ndarray, np.ndarray]:
    """(degraded, sharp) ``(M, H, W)`` in-plane slices of ``volume`` ``(P, Q, N)`` (thick axis last).

    Both in-plane directions are degraded (the second by transposing), each slice with the first
    ``factor``-multiple rows; the degraded axis is always the first of a slice.
    """
    inputs, targets = [], []
    for slices in (np.moveaxis(volume, 2, 0), np.moveaxis(volume, 2, 0).transpose(0, 2, 1)):
        h = slices.shape[1] - slices.shape[1] % factor
        sharp = np.ascontiguousarray(slices[:, :h])
        inputs.append(_degrade_rows(sharp, factor))
        targets.append(sharp)
    width = min(t.shape[2] for t in targets)
    height = min(t.shape[1] for t in targets)
    cut = lambda a: a[:, :height, :width]  # noqa: E731
    return np.concatenate([cut(a) for a in inputs]), np.concatenate([cut(a) for a in targets])


def fit_smore(
    volume: np.ndarray,
    factor: int,
    *,
    steps: int = 300,
    patch: int = 48,
    batch: int = 16,
    lr: float = 1e-3,
    seed: int = 0,
    device: str = "cpu",
    callback: Callable[[int, float], None] | None = None,
) -> SliceSR2d:
    """Train a :class:`SliceSR2d` on in-plane pairs of ``volume`` ``(P, Q, N)`` (normalised, thick axis last)."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    degraded, sharp = training_pairs(volume, factor)
    net = SliceSR2d().to(device).train()
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(steps, 1), eta_min=lr * 0.05)
    ph, pw = min(patch, sharp.shape[1]), min(patch, sharp.shape[2])
    for step in range(steps):
        idx = rng.integers(0, len(sharp), batch)
        r0 = rng.integers(0, sharp.shape[1] - ph + 1, batch)
        c0 = rng.integers(0, sharp.shape[2] - pw + 1, batch)
        xin = np.stack([degraded[i, r : r + ph, c : c + pw] for i, r, c in zip(idx, r0, c0)])
        tgt = np.stack([sharp[i, r : r + ph, c : c + pw] for i, r, c in zip(idx, r0, c0)])
        flip = rng.random(batch) < 0.5  # mirror along the sharp axis: anatomy has no handedness here
        xin[flip], tgt[flip] = xin[flip, :, ::-1], tgt[flip, :, ::-1]
        xt, tt = (torch.from_numpy(np.ascontiguousarray(a))[:, None].to(device) for a in (xin, tgt))
        loss = torch.mean(torch.abs(net(xt) - tt))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if callback is not None:
            callback(step, loss.item())
    return net.eval()


def apply_smore(net: SliceSR2d, upsampled: np.ndarray, device: str = "cpu", batch: int = 8) -> np.ndarray:
    """Restore the last axis of ``upsampled`` ``(P, Q, M)`` with ``net`` in both planes containing it."""
    out = np.zeros_like(upsampled, dtype=np.float32)
    with torch.inference_mode():
        for plane_axis in (0, 1):
            slices = np.moveaxis(upsampled, plane_axis, 0)  # (S, other, M)
            restored = np.empty_like(slices)
            for s in range(0, len(slices), batch):
                chunk = torch.from_numpy(np.ascontiguousarray(slices[s : s + batch].transpose(0, 2, 1)))
                pred = net(chunk[:, None].to(device))[:, 0].cpu().numpy()
                restored[s : s + batch] = pred.transpose(0, 2, 1)
            out += np.moveaxis(restored, 0, plane_axis)
    return out / 2.0


def superres_array(
    x: np.ndarray,
    factor: int,
    axis: int,
    *,
    method: str = "smore",
    steps: int = 300,
    seed: int = 0,
    device: str = "cpu",
    callback: Callable[[int, float], None] | None = None,
) -> np.ndarray:
    """Upsample ``x`` ``(X, Y, Z)`` by an integer ``factor`` along ``axis``; float32, the input's units."""
    if method in _ORDERS:
        shape = list(x.shape)
        shape[axis] *= factor
        return resample(x, shape, _ORDERS[method])
    v = np.moveaxis(np.asarray(x, np.float32), axis, 2)
    low, high = np.percentile(v, [0.5, 99.5])
    scale = float(max(high - low, 1e-6))
    vn = (v - low) / scale
    net = fit_smore(vn, factor, steps=steps, seed=seed, device=device, callback=callback)
    up = resample(vn, (vn.shape[0], vn.shape[1], vn.shape[2] * factor), 3)
    out = apply_smore(net, up, device=device) * scale + low
    return np.moveaxis(out, 2, axis).astype(np.float32)


def plan(affine: np.ndarray, shape: Sequence[int], *, factor: float | None, axis: int | None,
         spacing: Sequence[float] | None) -> tuple[int, int, list[int]]:
    """``(factor, axis, final_shape)`` for a request: ``factor`` along ``axis`` or a target ``spacing`` (mm).

    With ``spacing``, the learned factor is the rounded ratio along the thickest axis; every axis is
    then resampled (cubic) to the exact grid ``round(n * old / new)``.
    """
    old = np.asarray(spacing_from_affine(affine))
    if spacing is not None:
        target = np.asarray(spacing, float)
        if target.shape != (3,) or np.any(target <= 0):
            raise ConfigError("key 'spacing': give three positive voxel sizes in mm, e.g. 1,1,1")
        ratios = old / target
        axis = int(np.argmax(ratios)) if axis is None else axis
        final = [max(1, int(round(n * r))) for n, r in zip(shape, ratios)]
        return max(1, int(round(ratios[axis]))), axis, final
    if factor is None or factor < 1 or abs(factor - round(factor)) > 1e-6:
        raise ConfigError("key 'factor': give an integer factor >= 1 (or use --spacing for other grids)")
    axis = int(np.argmax(old)) if axis is None else axis
    if axis not in (0, 1, 2):
        raise ConfigError(f"key 'axis': {axis} is not 0, 1 or 2")
    final = list(shape)
    final[axis] *= int(round(factor))
    return int(round(factor)), axis, final


def superres(
    scan: torch.Tensor,
    *,
    factor: float | None = None,
    axis: int | None = None,
    spacing: Sequence[float] | None = None,
    method: str = "auto",
    steps: int = 300,
    seed: int = 0,
    device: str = "cpu",
    callback: Callable[[int, float], None] | None = None,
) -> torch.Tensor:
    """Super-resolve a scan ``(C, X, Y, Z)`` through-plane (``factor`` along ``axis``) or to ``spacing``.

    Args:
        factor: integer up-sampling along ``axis`` (default axis: the one with the largest spacing).
        spacing: target voxel size (mm) per axis, instead of ``factor``.
        method: ``"auto"``/``"smore"`` (self-supervised network), or ``"cubic"``, ``"linear"``,
            ``"nearest"`` interpolation.
        steps, seed: SMORE optimiser steps and the seed of every random choice.

    Returns:
        MetaTensor ``(C, X', Y', Z')`` float32 in the input's units, with the affine of the finer grid
        (thick-slice centres at the centres of the thin slices they cover) and provenance.
    """
    method = "smore" if method == "auto" else method
    if method not in METHODS:
        raise ConfigError(f"key 'method': unknown '{method}', choose one of {', '.join(METHODS)}")
    array = scan.detach().cpu().float().numpy()
    affine = affine_of(scan)
    f, axis, final = plan(affine, array.shape[1:], factor=factor, axis=axis, spacing=spacing)
    channels = []
    for c in range(array.shape[0]):
        out = superres_array(array[c], f, axis, method=method, steps=steps, seed=seed, device=device,
                             callback=callback)
        if list(out.shape) != final:
            out = resample(out, final, 3)
        channels.append(out)
    result = like(scan, np.stack(channels))
    new_affine = resampled_affine(affine, array.shape[1:], final)
    result.meta["affine"] = torch.as_tensor(new_affine, dtype=torch.float64)
    result.meta["spacing"] = spacing_from_affine(new_affine)
    model = "smore-self-supervised" if method == "smore" else None
    return mark(result, "superres", synthetic=False, model=model, seed=seed, method=method, factor=f,
                axis=axis, steps=steps if method == "smore" else 0, shape=final)
