"""Denoise a whole scan: pretrained blind denoiser, self-supervised adaptation, or both.

Methods (``method=``):

- ``"pretrained"``: the shipped noise-level-conditioned 3D U-Net; the noise level is estimated from
  the scan (:func:`medgen.enhance.noise.estimate_sigma`) unless given. Seconds on CPU.
- ``"adapt"``: the pretrained network fine-tuned on the scan itself with Neighbor2Neighbor
  (:mod:`medgen.enhance.self_supervised`), for noise or contrasts it has not met.
- ``"self-supervised"``: a fresh network trained on the scan only; needs no weights at all.
- ``"diffusion"``: posterior sampling with a model-zoo diffusion model given as ``model``
  (:mod:`medgen.enhance.diffusion_denoise`, which also returns a per-voxel uncertainty map).
- ``"auto"``: ``"pretrained"`` with three collaborative Wiener passes -- the best result within about a
  minute on a 2-core CPU for a 96³ volume in our benchmark (``benchmarks/enhance.py``; about 7 s).

After the network, ``refine`` passes of collaborative Wiener filtering
(:mod:`medgen.enhance.collaborative`, BM4D's second stage) filter the *noisy* scan again with the
network's output as the pilot: groups of look-alike blocks from the whole neighbourhood are averaged,
which the network cannot do (about +2.2 dB on MR, +4.6-5.0 dB on the CT phantom at 3-9 % noise). Each pass
uses the previous one as its pilot.

Noise (``noise=``): ``"rician"`` (MR magnitude), ``"gaussian"`` (also CT in HU),
``"poisson"`` (Poisson-Gaussian: the generalised Anscombe transform makes it unit Gaussian first), or
``"auto"`` (:func:`medgen.enhance.noise.guess_noise_model`).

Output policy: float32, the input's units (HU stays HU), the input's geometry and metadata, plus a
provenance record (``operation="denoise"``, model, seed, method, noise model, sigma). Enhanced scans
are *derived*, not synthetic.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import numpy as np
import torch

from medgen.enhance import noise as noise_models
from medgen.enhance.collaborative import collaborative_wiener
from medgen.enhance.inference import check_flips, fit_window, flip_ensemble, sliding_window
from medgen.enhance.pretrained import DEFAULT_DENOISER, load_denoiser
from medgen.enhance.self_supervised import fit_neighbor2neighbor
from medgen.errors import ConfigError, ScanValueError
from medgen.intensity import robust_range
from medgen.io.meta import like, meta_of
from medgen.io.provenance import mark
from medgen.models.enhancers import Denoiser3d
from medgen.seeding import seeded

METHODS = ("auto", "pretrained", "adapt", "self-supervised", "diffusion")
NOISES = ("auto", *noise_models.NOISE_MODELS)
ADAPT_LR, SCRATCH_LR = 1e-4, 2e-3
# from scratch, Neighbor2Neighbor plateaus for ~150 steps before the PSNR rises (+5 dB at 300 on 64³)
DEFAULT_STEPS = {"adapt": 100, "self-supervised": 400}
# over one pass, a second adds 0.3-0.6 dB and a third 0.07-0.13 dB (~1.7 s each for 96³ on 2 cores)
DEFAULT_REFINE = 3
WHOLE_AXIS = 128  # one window along axes up to this length: a 128³ window needs ~1 GiB on CPU
MIN_WINDOW = 16  # the U-Net pools four times; shorter axes are padded to this by the sliding window
MIN_FIT_AXIS = 32  # per-scan training (adapt, self-supervised) halves 32³ crops (Neighbor2Neighbor)


@dataclass(frozen=True)
class Normalisation:
    """Affine intensity map ``x_norm = (x - low) / scale`` (robust 0.5 and 99.5 percentiles)."""

    low: float
    scale: float

    @classmethod
    def of(cls, x: np.ndarray) -> Normalisation:
        low, high = robust_range(x)
        return cls(float(low), float(max(high - low, 1e-6)))

    def forward(self, x: np.ndarray) -> np.ndarray:
        return ((x - self.low) / self.scale).astype(np.float32)

    def inverse(self, x: np.ndarray) -> np.ndarray:
        return (x * self.scale + self.low).astype(np.float32)


def denoise_array(
    x: np.ndarray,
    *,
    method: str = "auto",
    model: str = DEFAULT_DENOISER,
    noise: str = "rician",
    sigma: float | None = None,
    steps: int | None = None,
    seed: int = 0,
    flips: int = 1,
    refine: int = DEFAULT_REFINE,
    device: str = "cpu",
    roi: tuple[int, int, int] | None = None,
    callback: Callable[[int, float], None] | None = None,
    progress: Callable[[str, int, int], None] | None = None,
) -> tuple[np.ndarray, dict]:
    """Denoise one ``(X, Y, Z)`` volume in its own units.

    Args:
        noise: ``"rician"``, ``"gaussian"`` or ``"poisson"`` (not ``"auto"`` here).
        sigma: noise std in the units of ``x``; estimated when None (ignored for ``"poisson"``).
        steps: Neighbor2Neighbor optimiser steps for ``"adapt"`` / ``"self-supervised"`` (None: 100 / 400).
        flips: mirrored copies averaged at inference (1-8, :func:`~medgen.enhance.inference.flip_ensemble`);
            after ``refine`` they add < 0.1 dB.
        refine: collaborative Wiener passes after the network (0: the network's output as it is).
        callback: ``callback(step, loss)`` during self-supervised training.
        progress: ``progress(stage, done, total)`` for the network's windows and each Wiener pass's slabs.
        roi: the network's window (voxels); None: a whole axis up to :data:`WHOLE_AXIS` voxels, else the
            fewest windows of at most that size (:func:`~medgen.enhance.inference.fit_window`).

    Returns:
        ``(denoised (X, Y, Z) float32, info)`` with ``info`` = method, sigma (input units), noise,
        model, steps, flips, refine.
    """
    method = "pretrained" if method == "auto" else method
    if method not in METHODS:
        raise ConfigError(f"key 'method': unknown '{method}', choose one of {', '.join(METHODS)}")
    x = np.asarray(x, dtype=np.float32)
    if not np.isfinite(x).all():  # they would spread through the network's windows and the Wiener blocks
        raise ScanValueError(f"{x.size - int(np.isfinite(x).sum())} voxels are NaN or Inf; fill or mask them first")
    check_flips(flips)  # before any training
    if method in ("adapt", "self-supervised") and min(x.shape) < MIN_FIT_AXIS:
        raise ConfigError(f"key 'method': '{method}' trains on the scan and needs every axis >= {MIN_FIT_AXIS} "
                          f"voxels, got {x.shape}; use --method pretrained")
    if refine < 0:
        raise ConfigError(f"key 'refine': must be 0 or more, got {refine}")
    info: dict = {"method": method, "noise": noise, "flips": flips, "refine": refine}
    if noise == "poisson":
        gain, read_var = noise_models.estimate_poisson_gaussian(x)
        info.update(gain=gain, read_var=read_var)
        work, unit_sigma = noise_models.anscombe(x, gain, read_var).astype(np.float32), 1.0
    else:
        work = x
        unit_sigma = float(sigma) if sigma is not None else noise_models.estimate_sigma(x)
        info["sigma"] = unit_sigma
    norm = Normalisation.of(work)
    sigma_n = unit_sigma / norm.scale
    volume = torch.from_numpy(norm.forward(work))[None, None]
    if method == "self-supervised":
        with seeded(seed):  # the fresh network's initial weights, without touching the caller's RNG
            net, model_name = Denoiser3d(), None
            # start near the identity: a few hundred steps on one scan must not spend the first undoing noise
            torch.nn.init.normal_(net.unet.final_conv.weight, std=1e-2)
    else:
        loaded = load_denoiser(model)
        net, model_name = loaded.network, loaded.card.get("name", loaded.name)
    if method in ("adapt", "self-supervised"):
        steps = DEFAULT_STEPS[method] if steps is None else steps
        lr = ADAPT_LR if method == "adapt" else SCRATCH_LR  # fine-tuning must not forget the pretraining
        fit_neighbor2neighbor(net, volume, sigma_n, steps=steps, lr=lr, seed=seed, device=device, callback=callback)
        info["steps"] = steps
    net.to(device).eval()
    predict = flip_ensemble(lambda w: net(w, sigma_n), flips)
    stage = (lambda name: None) if progress is None else (lambda name: partial(progress, name))
    if roi is None:
        roi = tuple(max(MIN_WINDOW, fit_window(n, WHOLE_AXIS)) for n in x.shape)
    out = sliding_window(predict, volume, roi=roi, device=device, progress=stage("network"))[0, 0].numpy()
    out = norm.inverse(out)
    if noise == "rician" and method == "self-supervised":
        # a network trained on the noisy scan alone learns E[magnitude], which carries the Rician bias;
        # the pretrained network (also when adapted) learned to remove it
        out = noise_models.rician_bias_correct(out, unit_sigma)
    for k in range(refine):  # in the domain where the noise is Gaussian-like with std unit_sigma
        out = collaborative_wiener(work, out, unit_sigma, rician=noise == "rician", device=device,
                                   progress=stage(f"Wiener pass {k + 1}/{refine}"))
    if noise == "poisson":
        out = noise_models.inverse_anscombe(out, info["gain"], info["read_var"]).astype(np.float32)
    info["model"] = model_name
    return out.astype(np.float32), info


def denoise(
    scan: torch.Tensor,
    *,
    method: str = "auto",
    model: str = DEFAULT_DENOISER,
    noise: str = "auto",
    sigma: float | None = None,
    steps: int | None = None,
    seed: int = 0,
    flips: int = 1,
    refine: int = DEFAULT_REFINE,
    device: str = "cpu",
    callback: Callable[[int, float], None] | None = None,
    progress: Callable[[str, int, int], None] | None = None,
) -> torch.Tensor:
    """Denoise a scan ``(C, X, Y, Z)`` (each channel on its own); see the module docstring.

    Args:
        scan: MetaTensor from :func:`medgen.io.load_scan` (or any tensor; geometry then identity).
        method: ``"auto"``, ``"pretrained"``, ``"adapt"`` or ``"self-supervised"``.
        model: shipped model name, model folder or ``.safetensors`` file.
        noise: ``"auto"``, ``"rician"``, ``"gaussian"`` or ``"poisson"``.
        sigma: noise std in the scan's units; estimated when None.
        steps, seed: self-supervised optimiser steps (None: 100 adapt, 400 self-supervised) and the
            seed of every random choice.
        flips, refine, progress: see :func:`denoise_array`.

    Returns:
        MetaTensor ``(C, X, Y, Z)`` float32 in the input's units and geometry, with provenance.
    """
    if noise not in NOISES:
        raise ConfigError(f"key 'noise': unknown '{noise}', choose one of {', '.join(NOISES)}")
    if method == "diffusion":
        from medgen.enhance.diffusion_denoise import diffusion_denoise

        return diffusion_denoise(scan, model, sigma=sigma, seed=seed, device=device)[0]
    meta = meta_of(scan)
    array = scan.detach().cpu().float().numpy()
    if noise == "auto":
        noise = noise_models.guess_noise_model(array, str(meta.get("modality", "")), str(meta.get("units", "")))
    channels, infos = [], []
    for c in range(array.shape[0]):
        out, info = denoise_array(
            array[c], method=method, model=model, noise=noise, sigma=sigma, steps=steps, seed=seed,
            flips=flips, refine=refine, device=device, callback=callback, progress=progress,
        )
        channels.append(out)
        infos.append(info)
    result = like(scan, np.stack(channels).astype(np.float32))
    first = infos[0]
    extra = {k: first[k] for k in ("sigma", "gain", "read_var", "steps", "flips", "refine") if k in first}
    if "sigma" in extra and len(infos) > 1:
        extra["sigma"] = [i["sigma"] for i in infos]
    return mark(
        result, "denoise", synthetic=False, model=first["model"], seed=seed,
        method=first["method"], noise=noise, **extra,
    )
