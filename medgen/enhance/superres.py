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

A *pretrained* variant of the same 2D network (the shipped model ``superres2d``, trained by
``scripts/train_superres.py`` on the built-in MR and CT volumes with simulated box slice profiles of
factors 2-6) restores the detail at once, and ``"adapt"`` fine-tunes it on the scan's own in-plane
pairs; ``superres2d-gan`` is that network refined with an adversarial term (MONAI
``PatchDiscriminator``) for sharper, less faithful detail.

Example:
    >>> thin = superres(scan, factor=4, axis=2)      # doctest: +SKIP
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from functools import partial

import numpy as np
import torch
from scipy import ndimage

from medgen.enhance.pretrained import DEFAULT_SUPERRES, GAN_SUPERRES, load_superres
from medgen.errors import ConfigError, ScanValueError
from medgen.intensity import is_ct, robust_range
from medgen.io.meta import affine_of, fine_axes, like, meta_of, spacing_from_affine
from medgen.io.provenance import mark
from medgen.models.enhancers import SliceSR2d
from medgen.seeding import seeded
from medgen.training.loop import Phase, cosine, fit

METHODS = ("auto", "pretrained", "adapt", "gan", "smore", "cubic", "linear", "nearest")
# optimiser steps on the scan itself: a fresh network (smore) needs many, a pretrained one a few. SMORE on a
# 96³ MNI crop at x4 beats cubic by 0.45 dB after 300 steps, 0.9 after 1000, 2.1 after 3000 and 2.3 after
# 4000 (bf16: ~0.07 s a step on 2 CPU threads with AMX, 0.14 s in float32, whatever the scan's size);
# "auto" falling back to it keeps to about a minute.
DEFAULT_STEPS = {"pretrained": 0, "gan": 0, "adapt": 60, "smore": 4000}
AUTO_SMORE_STEPS = 300
SCRATCH_LR, ADAPT_LR = 1e-3, 1e-4
_ORDERS = {"nearest": 0, "linear": 1, "cubic": 3}
MAX_OUTPUT_VOXELS = 2**29
"""Voxels (all channels) of an output: 2 GiB per float32 copy, and the learned methods hold about six
copies; 512x512x2048 still fits. A larger request is refused before any work."""


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


def degrade(x: np.ndarray, factor: int, axis: int) -> np.ndarray:
    """Thick-sample ``axis`` of ``x`` (box of ``factor`` slices) and cubic-B-spline it back to its length.

    The axis is first cut to a multiple of ``factor``. This is what a thick-slice acquisition followed
    by cubic interpolation does to that axis; it is linear in ``x``.
    """
    thick = thick_slices(x, factor, axis)
    zoom = [1.0] * x.ndim
    zoom[axis] = float(factor)
    return ndimage.zoom(thick, zoom, order=3, mode="nearest", grid_mode=True).astype(np.float32)


def sharp_axes(spacing: Sequence[float] | None, axis: int) -> tuple[int, ...]:
    """The in-plane axes (0 and/or 1 once ``axis`` is moved last) fine enough to learn from: spacing
    within 1.5x of the finest in-plane one. Thick-sampling an axis that is already coarse (the 6.5 mm
    slices of a scan whose *in-plane* axis is being restored) teaches the network nothing true."""
    if spacing is None:
        return (0, 1)
    return fine_axes([s for i, s in enumerate(spacing) if i != axis])


def training_pairs(volume: np.ndarray, factor: int, axes: Sequence[int] = (0, 1)) -> tuple[np.ndarray, np.ndarray]:
    """(degraded, sharp) ``(M, H, W)`` in-plane slices of ``volume`` ``(P, Q, N)`` (thick axis last).

    The in-plane directions in ``axes`` are degraded (axis 1 by transposing), each slice with the first
    ``factor``-multiple rows; the degraded axis is always the first of a slice.
    """
    inputs, targets = [], []
    planes = np.moveaxis(volume, 2, 0)
    for slices in [planes if a == 0 else planes.transpose(0, 2, 1) for a in axes]:
        h = slices.shape[1] - slices.shape[1] % factor
        sharp = np.ascontiguousarray(slices[:, :h])
        inputs.append(degrade(sharp, factor, 1))
        targets.append(sharp)
    width = min(t.shape[2] for t in targets)
    height = min(t.shape[1] for t in targets)
    cut = lambda a: a[:, :height, :width]  # noqa: E731
    return np.concatenate([cut(a) for a in inputs]), np.concatenate([cut(a) for a in targets])


def bf16_native(device: str) -> bool:
    """Whether ``device`` runs bfloat16 convolutions natively: a CUDA GPU with bf16, or a CPU with
    AVX512-BF16/AMX (oneDNN); elsewhere bf16 is emulated and slower than float32."""
    kind = torch.device(device).type
    if kind == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    try:
        return kind == "cpu" and bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def fit_smore(
    volume: np.ndarray,
    factor: int,
    *,
    net: SliceSR2d | None = None,
    steps: int = 300,
    patch: int = 48,
    batch: int = 16,
    lr: float = 1e-3,
    seed: int = 0,
    device: str = "cpu",
    bf16: bool | None = None,
    axes: Sequence[int] = (0, 1),
    callback: Callable[[int, float], None] | None = None,
) -> SliceSR2d:
    """Train ``net`` (default: a fresh :class:`SliceSR2d`) on in-plane pairs of ``volume`` ``(P, Q, N)``
    that thick-sample the in-plane ``axes`` (:func:`sharp_axes`).

    ``volume`` is normalised, its thick axis last. Given a pretrained ``net``, this adapts it to the
    scan (use a small ``lr``). ``bf16`` (None: :func:`bf16_native`) runs the forward pass under
    bfloat16 autocast: 2.2x faster steps on a CPU with AMX, -0.1 dB after 3000 SMORE steps on the MNI
    crop at x4; the weights and the inference stay float32.
    """
    rng = np.random.default_rng(seed)
    bf16 = bf16_native(device) if bf16 is None else bf16
    degraded, sharp = training_pairs(volume, factor, axes)
    if net is None:
        with seeded(seed):  # the fresh network's initial weights, without touching the caller's RNG
            net = SliceSR2d()
    net = net.to(device)
    ph, pw = min(patch, sharp.shape[1]), min(patch, sharp.shape[2])

    def loss_at(step: int) -> torch.Tensor:
        idx = rng.integers(0, len(sharp), batch)
        r0 = rng.integers(0, sharp.shape[1] - ph + 1, batch)
        c0 = rng.integers(0, sharp.shape[2] - pw + 1, batch)
        xin = np.stack([degraded[i, r : r + ph, c : c + pw] for i, r, c in zip(idx, r0, c0)])
        tgt = np.stack([sharp[i, r : r + ph, c : c + pw] for i, r, c in zip(idx, r0, c0)])
        flip = rng.random(batch) < 0.5  # mirror along the sharp axis: anatomy has no handedness here
        xin[flip], tgt[flip] = xin[flip, :, ::-1], tgt[flip, :, ::-1]
        xt, tt = (torch.from_numpy(np.ascontiguousarray(a))[:, None].to(device) for a in (xin, tgt))
        return torch.mean(torch.abs(net(xt, factor) - tt))

    fit([Phase(net, loss_at, lr=lr)], steps=steps, schedule=cosine(final=0.05), bf16=bf16, device=device,
        callback=callback)
    return net.eval()


def apply_smore(net: SliceSR2d, upsampled: np.ndarray, factor: int, device: str = "cpu",
                batch: int = 8, progress: Callable[[int, int], None] | None = None) -> np.ndarray:
    """Restore the last axis of ``upsampled`` ``(P, Q, M)`` with ``net`` in both planes containing it.

    ``progress(slices_done, slices_total)`` is called after each batch of slices.
    """
    out = np.zeros_like(upsampled, dtype=np.float32)
    net = net.to(device).eval()
    total, done = upsampled.shape[0] + upsampled.shape[1], 0
    with torch.inference_mode():
        for plane_axis in (0, 1):
            slices = np.moveaxis(upsampled, plane_axis, 0)  # (S, other, M)
            restored = np.empty_like(slices)
            for s in range(0, len(slices), batch):
                chunk = torch.from_numpy(np.ascontiguousarray(slices[s : s + batch].transpose(0, 2, 1)))
                pred = net(chunk[:, None].to(device), factor)[:, 0].cpu().numpy()
                restored[s : s + batch] = pred.transpose(0, 2, 1)
                done += len(pred)
                if progress is not None:
                    progress(done, total)
            out += np.moveaxis(restored, 0, plane_axis)
    return out / 2.0


def network_for(method: str, factor: int, model: str | None, steps: int) -> tuple[SliceSR2d | None, str, int]:
    """``(network or None for a fresh one, model name, adaptation steps)`` of a learned ``method``."""
    if method == "smore":
        return None, "smore-self-supervised", steps
    name = model or (GAN_SUPERRES if method == "gan" else DEFAULT_SUPERRES)
    loaded = load_superres(name)
    net, factors = loaded.network, [int(f) for f in loaded.config.get("factors", [])]
    if factor not in factors:
        raise ConfigError(f"key 'factor': {factor} is not one the model '{name}' was trained for "
                          f"({', '.join(map(str, factors))}); use --method smore, which learns any factor")
    return net, str(loaded.card.get("name", loaded.name)), steps if method == "adapt" else 0


def superres_array(
    x: np.ndarray,
    factor: int,
    axis: int,
    *,
    method: str = "pretrained",
    model: str | None = None,
    steps: int | None = None,
    seed: int = 0,
    device: str = "cpu",
    spacing: Sequence[float] | None = None,
    callback: Callable[[int, float], None] | None = None,
    progress: Callable[[str, int, int], None] | None = None,
) -> tuple[np.ndarray, dict]:
    """Upsample ``x`` ``(X, Y, Z)`` by an integer ``factor`` along ``axis``; float32, the input's units.

    ``spacing`` (mm, of ``x``): learning on the scan uses only its fine in-plane axes (:func:`sharp_axes`).

    ``callback(step, loss)`` follows the training on the scan; ``progress(stage, done, total)`` reports
    its steps (``"training on the scan"``) and the restored slices (``"slices"``).

    Raises:
        ScanValueError: NaN or Inf voxels (they would spread through every interpolation).

    Returns:
        ``(array, info)`` with ``info`` = method, model, steps (the optimiser steps on the scan) and
        training_precision (``"bf16"`` where :func:`bf16_native`, else ``"fp32"``; None without training).
    """
    if not np.isfinite(x).all():
        raise ScanValueError(f"{x.size - int(np.isfinite(x).sum())} voxels are NaN or Inf; fill or mask them first")
    if method in _ORDERS:
        shape = list(x.shape)
        shape[axis] *= factor
        return resample(x, shape, _ORDERS[method]), {"method": method, "model": None, "steps": 0,
                                                        "training_precision": None}
    steps = DEFAULT_STEPS[method] if steps is None else steps
    net, name, steps = network_for(method, factor, model, steps)
    v = np.moveaxis(np.asarray(x, np.float32), axis, 2)
    low, high = robust_range(v)
    scale = float(max(high - low, 1e-6))
    vn = (v - low) / scale
    bf16 = bool(steps) and bf16_native(device)
    if steps:
        lr = SCRATCH_LR if net is None else ADAPT_LR

        def each_step(step: int, loss: float) -> None:
            if callback is not None:
                callback(step, loss)
            if progress is not None:
                progress("training on the scan", step + 1, steps)

        net = fit_smore(vn, factor, net=net, steps=steps, lr=lr, seed=seed, device=device, bf16=bf16,
                        axes=sharp_axes(spacing, axis), callback=each_step)
    up = resample(vn, (vn.shape[0], vn.shape[1], vn.shape[2] * factor), 3)
    slices = None if progress is None else partial(progress, "slices")
    out = apply_smore(net, up, factor, device=device, progress=slices) * scale + low
    info = {"method": method, "model": name, "steps": steps,
            "training_precision": ("bf16" if bf16 else "fp32") if steps else None}
    return np.moveaxis(out, 2, axis).astype(np.float32), info


def plan(affine: np.ndarray, shape: Sequence[int], *, factor: float | None, axis: int | None,
         spacing: Sequence[float] | None) -> tuple[int, int, list[int]]:
    """``(factor, axis, final_shape)`` for a request: ``factor`` along ``axis`` or a target ``spacing`` (mm).

    With ``spacing``, the learned factor is the rounded ratio along the thickest axis; every axis is
    then resampled (cubic) to the exact grid ``round(n * old / new)``.

    Raises:
        ConfigError: naming the key: a factor that is not an integer >= 1, an axis other than 0-2, a
            spacing that is not three positive sizes, or an output over :data:`MAX_OUTPUT_VOXELS` voxels.
    """
    old = np.asarray(spacing_from_affine(affine), float)
    if len(shape) != 3 or not np.all(np.isfinite(old) & (old > 0)):
        raise ConfigError(f"key 'scan': super-resolution needs a 3D scan with positive voxel sizes, got shape "
                          f"{list(shape)}, spacing {np.round(old, 4).tolist()} mm")
    if axis is not None and axis not in (0, 1, 2):
        raise ConfigError(f"key 'axis': {axis} is not 0, 1 or 2")
    if spacing is not None:
        target = np.asarray(spacing, float)
        if target.shape != (3,) or not np.all(np.isfinite(target) & (target > 0)):
            raise ConfigError(f"key 'spacing': give three positive voxel sizes in mm, e.g. 1,1,1 (got {spacing})")
        ratios = old / target
        axis = int(np.argmax(ratios)) if axis is None else axis
        final = [max(1, int(round(n * r))) for n, r in zip(shape, ratios)]
        f, key = max(1, int(round(ratios[axis]))), "spacing"
    else:
        if factor is None or not np.isfinite(factor) or factor < 1 or abs(factor - round(factor)) > 1e-6:
            raise ConfigError(f"key 'factor': give an integer factor >= 1, got {factor} "
                              "(or use --spacing for other grids)")
        f, key = int(round(factor)), "factor"
        axis = int(np.argmax(old)) if axis is None else axis
        final = list(shape)
        final[axis] *= f
    if math.prod(final) > MAX_OUTPUT_VOXELS:
        raise ConfigError(f"key '{key}': the output would be {'x'.join(map(str, final))} = {math.prod(final):,} "
                          f"voxels, over medgen's bound of {MAX_OUTPUT_VOXELS:,} (2 GiB of float32)")
    return f, axis, final


def auto_method(factor: int, model: str | None = None, *, ct: bool = False) -> str:
    """The default: the pretrained network where its card lists ``factor`` (about 20 s for 96³ on 2
    CPU threads), adapted to the scan for :data:`DEFAULT_STEPS` ``["adapt"]`` steps when it is a CT
    (``ct``: :func:`medgen.intensity.is_ct`); else SMORE (which :func:`superres` then runs for
    :data:`AUTO_SMORE_STEPS` unless given ``steps``).

    Adapting is the CT default because the network learnt CT from flat procedural phantoms: on the
    acquired chest CTs of ``benchmarks/enhance.py`` at x4 it gains +2.8 / +2.6 dB over cubic where the
    network alone gains +0.2 / +0.8 dB (lung1, which chose the rule, and lung2); on MR it gains nothing
    (brain1 -0.0, brain2 -0.2, b0 +0.0, MNI152 -0.3 dB against the network alone) at 2-4x the time.
    """
    if factor == 1:
        return "cubic"
    try:
        factors = load_superres(model or DEFAULT_SUPERRES).config.get("factors", [])
    except ConfigError:
        if model is not None:  # the user's own model must load; only a missing shipped one falls back
            raise
        return "smore"
    if factor not in [int(f) for f in factors]:
        return "smore"
    return "adapt" if ct else "pretrained"


def superres(
    scan: torch.Tensor,
    *,
    factor: float | None = None,
    axis: int | None = None,
    spacing: Sequence[float] | None = None,
    method: str = "auto",
    model: str | None = None,
    steps: int | None = None,
    seed: int = 0,
    device: str = "cpu",
    callback: Callable[[int, float], None] | None = None,
    progress: Callable[[str, int, int], None] | None = None,
) -> torch.Tensor:
    """Super-resolve a scan ``(C, X, Y, Z)`` through-plane (``factor`` along ``axis``) or to ``spacing``.

    Args:
        factor: integer up-sampling along ``axis`` (default axis: the one with the largest spacing).
        spacing: target voxel size (mm) per axis, instead of ``factor``.
        method: ``"pretrained"`` (the shipped 2D slice network, trained on simulated slice profiles),
            ``"adapt"`` (it, fine-tuned on the scan's own in-plane detail), ``"gan"`` (its
            adversarially refined variant: sharper, lower PSNR), ``"smore"`` (a fresh network learned
            from the scan alone, any factor), ``"cubic"``, ``"linear"``, ``"nearest"``; ``"auto"``:
            :func:`auto_method`.
        model: a model folder or ``.safetensors`` file instead of the shipped network.
        steps, seed: optimiser steps on the scan (None: :data:`DEFAULT_STEPS`, or
            :data:`AUTO_SMORE_STEPS` when ``"auto"`` picks SMORE) and the seed of every random choice.
        callback, progress: see :func:`superres_array`.

    Returns:
        MetaTensor ``(C, X', Y', Z')`` float32 in the input's units, with the affine of the finer grid
        (thick-slice centres at the centres of the thin slices they cover) and provenance.
    """
    if method not in METHODS:
        raise ConfigError(f"key 'method': unknown '{method}', choose one of {', '.join(METHODS)}")
    array = scan.detach().cpu().float().numpy()
    affine = affine_of(scan)
    if steps is not None and steps < 0:
        raise ConfigError(f"key 'steps': must be >= 0, got {steps}")
    if not 0 <= seed < 2**32:
        raise ConfigError(f"key 'seed': must be between 0 and 2**32 - 1, got {seed}")
    f, axis, final = plan(affine, array.shape[1:], factor=factor, axis=axis, spacing=spacing)
    key = "spacing" if spacing is not None else "factor"
    if math.prod(final) * array.shape[0] > MAX_OUTPUT_VOXELS:
        raise ConfigError(f"key '{key}': {array.shape[0]} channels of {'x'.join(map(str, final))} voxels are over "
                          f"medgen's bound of {MAX_OUTPUT_VOXELS:,}")
    if method == "auto":
        meta = meta_of(scan)
        method = auto_method(f, model, ct=is_ct(array, str(meta.get("modality") or ""), str(meta.get("units") or "")))
        if method == "smore" and steps is None:
            steps = AUTO_SMORE_STEPS
    in_plane = [n for i, n in enumerate(array.shape[1:]) if i != axis]
    if method not in _ORDERS and min(in_plane) < f:
        raise ConfigError(f"key '{key}': x{f} with method '{method}' learns from in-plane detail, which needs "
                          f"in-plane axes of at least {f} voxels (this scan: {'x'.join(map(str, in_plane))}); "
                          "use a smaller factor or --method cubic")
    channels, info = [], {}
    for c in range(array.shape[0]):
        out, info = superres_array(array[c], f, axis, method=method, model=model, steps=steps, seed=seed,
                                   device=device, spacing=spacing_from_affine(affine), callback=callback,
                                   progress=progress)
        if list(out.shape) != final:
            out = resample(out, final, 3)
        channels.append(out)
    result = like(scan, np.stack(channels))
    new_affine = resampled_affine(affine, array.shape[1:], final)
    result.meta["affine"] = torch.as_tensor(new_affine, dtype=torch.float64)
    result.meta["spacing"] = spacing_from_affine(new_affine)
    return mark(result, "superres", synthetic=False, model=info["model"], seed=seed, method=method, factor=f,
                axis=axis, steps=info["steps"], training_precision=info["training_precision"], shape=final)
