"""Train the pretrained blind 3D denoiser shipped as ``medgen/weights/denoiser3d.safetensors``.

Reproducible: every random choice comes from ``--seed``; with the same thread count the weights are
identical run to run. The shipped weights come from
``python scripts/train_denoiser.py --features 16,32,64,128,256,16 --steps 3000`` (5.7 M parameters,
~85 min on one CPU thread); the default ``--features`` is the small network that
``method="self-supervised"`` trains from scratch (0.36 M parameters, ~20 min for 2500 steps).

Training data (all built in, nothing downloaded):

- the MNI152 2009 T1 at 1 mm and 2 mm (:func:`medgen.data.mni152`), in its own T1 contrast with a
  random gamma, and in random *synthetic contrasts* made from its CSF/GM/WM probability maps (random
  tissue intensities, so T2-, PD- and FLAIR-like orderings appear), mixed with the real T1 texture;
- CT phantoms (:func:`medgen.data.ct_phantom`, noise-free, 1.5-4 mm voxels) normalised as at run
  time (``(x - p0.5) / (p99.5 - p0.5)`` over the whole phantom), for ``--ct-fraction`` of the crops;
- random flips and axis permutations of 32³ crops that hold some brain (or body);
- noise: Rician (75 %) or Gaussian (25 %), std log-uniform in 0.5 %-20 % of the brightest tissue;
  the network is told the noise std with a +-10 % error, as the estimator at run time would give.

Targets are the clean crops; the loss is the mean squared error in normalised units (PSNR).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import monai
import numpy as np
import torch

from medgen.data.mni152 import mni152
from medgen.data.phantom import ct_phantom
from medgen.enhance.denoise import Normalisation
from medgen.enhance.networks import DENOISER_FEATURES, Denoiser3d
from medgen.enhance.noise import add_gaussian, add_rician
from medgen.enhance.pretrained import WEIGHTS_DIR, load_denoiser, save_model

SIGMA_RANGE = (0.005, 0.20)
CROP = 32


def load_sources() -> list[dict[str, np.ndarray]]:
    """T1 (scaled to [0, 1]) and CSF/GM/WM maps of the MNI152 at 1 mm and 2 mm, as float32 arrays."""
    out = []
    for res in (1, 2):
        t = mni152(res)
        arrays = {k: t[k][0].numpy().astype(np.float32) for k in ("image", "csf", "gm", "wm")}
        arrays["image"] /= 255.0
        arrays["mask"] = (arrays["csf"] + arrays["gm"] + arrays["wm"]) > 0.5
        out.append(arrays)
    return out


def load_ct_sources(n: int = 6) -> list[dict[str, np.ndarray]]:
    """Noise-free CT phantoms at 1.5-4 mm, each normalised over the whole volume as inference does."""
    out = []
    for seed in range(n):
        spacing = (1.5 + 0.5 * seed, 1.5 + 0.5 * seed, 2.0 + 0.4 * seed)
        shape = tuple(int(round(e / s)) for e, s in zip((300.0, 240.0, 160.0), spacing))
        hu = ct_phantom(seed=1000 + seed, shape=shape, spacing=spacing, noise=0)["image"][0].numpy()
        out.append({"image": Normalisation.of(hu).forward(hu), "mask": hu > -500})
    return out


def sample_ct(sources: list[dict[str, np.ndarray]], rng: np.random.Generator) -> np.ndarray:
    """One clean normalised CT crop ``(CROP, CROP, CROP)`` that holds some body."""
    src = sources[rng.integers(len(sources))]
    return flip_and_permute(src["image"][crop_slices(src["mask"], rng, 0.3)], rng)


def crop_slices(mask: np.ndarray, rng: np.random.Generator, fill: float) -> tuple[slice, ...]:
    """A random ``CROP``³ window of which more than ``fill`` is inside ``mask`` (last try if none)."""
    for _ in range(20):
        start = rng.integers(0, np.array(mask.shape) - CROP + 1)
        sl = tuple(slice(s, s + CROP) for s in start)
        if mask[sl].mean() > fill:
            break
    return sl


def flip_and_permute(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Random flips and axis order: anatomy has no preferred direction for a denoiser."""
    for ax in range(3):
        if rng.random() < 0.5:
            img = np.flip(img, ax)
    return np.ascontiguousarray(np.transpose(img, rng.permutation(3))).astype(np.float32)


def sample_clean(sources: list[dict[str, np.ndarray]], rng: np.random.Generator) -> np.ndarray:
    """One clean ``(CROP, CROP, CROP)`` crop in a random contrast, brightest tissue ~1."""
    src = sources[0] if rng.random() < 0.75 else sources[1]
    sl = crop_slices(src["mask"], rng, 0.2)
    t1 = src["image"][sl]
    if rng.random() < 0.4:
        img = t1 ** rng.uniform(0.7, 1.4)
    else:
        mu = rng.uniform(0.05, 1.0, 3)
        mu /= mu.max()
        synth = mu[0] * src["csf"][sl] + mu[1] * src["gm"][sl] + mu[2] * src["wm"][sl]
        alpha = rng.uniform(0.6, 1.0)
        img = alpha * synth + (1 - alpha) * t1
    return flip_and_permute(img * rng.uniform(0.8, 1.2), rng)


def sample_batch(sources, ct_sources, rng: np.random.Generator, batch: int,
                 ct_fraction: float) -> tuple[torch.Tensor, ...]:
    """``(noisy, clean, sigma_told)`` for ``batch`` crops: ``(B, 1, 32, 32, 32)`` and ``(B,)``.

    CT crops get Gaussian noise (HU noise; Poisson-Gaussian noise is made Gaussian by the Anscombe
    transform at run time), MR crops Rician (75 %) or Gaussian noise.
    """
    noisy, clean, told = [], [], []
    for _ in range(batch):
        is_ct = bool(ct_sources) and rng.random() < ct_fraction
        x = sample_ct(ct_sources, rng) if is_ct else sample_clean(sources, rng)
        sigma = float(np.exp(rng.uniform(*np.log(SIGMA_RANGE))))
        y = add_gaussian(x, sigma, rng) if is_ct or rng.random() >= 0.75 else add_rician(x, sigma, rng)
        noisy.append(y)
        clean.append(x)
        told.append(sigma * rng.uniform(0.9, 1.1))
    as_t = lambda a: torch.from_numpy(np.stack(a))[:, None]  # noqa: E731
    return as_t(noisy), as_t(clean), torch.tensor(told, dtype=torch.float32)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=2500)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="1 is fastest on a shared 2-core machine")
    parser.add_argument("--ct-fraction", type=float, default=0.3, help="share of crops from the CT phantoms")
    parser.add_argument("--init", default=None, help="start from these weights (a shipped name or a folder)")
    parser.add_argument("--features", default=",".join(map(str, DENOISER_FEATURES)),
                        help="BasicUNet feature sizes of a fresh network (6 ints; ignored with --init)")
    parser.add_argument("--name", default="denoiser3d")
    parser.add_argument("--out", type=Path, default=WEIGHTS_DIR, help="folder for NAME.safetensors + NAME.json")
    parser.add_argument("--overwrite", action="store_true")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    sources = load_sources()
    ct_sources = load_ct_sources() if args.ct_fraction > 0 else []
    features = tuple(int(f) for f in args.features.split(","))
    net = load_denoiser(args.init)[0].train() if args.init else Denoiser3d(features)
    opt = torch.optim.Adam(net.parameters(), lr=args.lr)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=args.lr, total_steps=args.steps, pct_start=0.05)
    start, running, identity = time.time(), [], []
    for step in range(1, args.steps + 1):
        noisy, clean, sigma = sample_batch(sources, ct_sources, rng, args.batch, args.ct_fraction)
        loss = torch.mean((net(noisy, sigma) - clean) ** 2)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        running.append(loss.item())
        identity.append(torch.mean((noisy - clean) ** 2).item())
        if step % 100 == 0 or step == args.steps:
            psnr = -10 * np.log10(np.mean(running[-100:]))
            gain = 10 * np.log10(np.mean(identity[-100:]) / np.mean(running[-100:]))
            print(f"step {step}/{args.steps}  loss {np.mean(running[-100:]):.2e}  ~PSNR {psnr:.2f} dB "
                  f"(+{gain:.2f} dB over the noisy input)  "
                  f"{time.time() - start:.0f}s", flush=True)
    card = {
        "name": args.name,
        "architecture": "Denoiser3d",
        "features": list(net.features),
        "task": "blind 3D denoising, noise std estimated from the scan and given as a second channel",
        "normalisation": "x_norm = (x - p0.5) / (p99.5 - p0.5) over the whole scan; sigma in the same units",
        "noise": {
            "models": ["rician", "gaussian", "poisson (through the Anscombe transform)"],
            "sigma_range_of_bright_tissue": list(SIGMA_RANGE),
        },
        "training": {
            "data": "MNI152 2009a T1 at 1 and 2 mm (nilearn files via medgen.data.mni152), own T1 contrast "
            "with random gamma and random synthetic tissue contrasts from its CSF/GM/WM maps; "
            f"{args.ct_fraction:.0%} of crops from 6 noise-free CT phantoms (medgen.data.ct_phantom, 1.5-4 mm)",
            "init": args.init,
            "crop": CROP, "batch": args.batch, "steps": args.steps, "lr": args.lr, "seed": args.seed,
            "threads": args.threads, "loss": "MSE", "final_loss": float(np.mean(running[-100:])),
            "wall_time_s": round(time.time() - start, 1), "script": "scripts/train_denoiser.py",
            "torch": torch.__version__, "monai": monai.__version__, "python": platform.python_version(),
            "command": " ".join(["python", *sys.argv]),
        },
        "limitations": "Anatomy seen in training is the MNI152 template itself (benchmarks on it are not held "
        "out) and procedural CT phantoms, no patient scans.",
        "license": "Apache-2.0",
    }
    save_model(net, card, args.out / f"{args.name}.safetensors", args.out / f"{args.name}.json",
               overwrite=args.overwrite)
    print(json.dumps(card["training"], indent=1))


if __name__ == "__main__":
    main()
