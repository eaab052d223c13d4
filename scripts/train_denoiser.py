"""Train the pretrained blind 3D denoiser shipped as the model folder ``medgen/weights/denoiser3d/``.

Runs on a CPU or a GPU (``--device cuda``; crops are cut and noised on the device, see
:mod:`medgen.enhance.training_data`). ``--time-budget`` stops at a wall-clock limit (the learning
rate schedule follows whichever of steps and time runs out first) and ``--checkpoint DIR
--checkpoint-every S`` writes an exact-resume checkpoint and the model folder as it goes, so a run
killed at a limit still leaves weights and ``--resume`` continues it. The loop is
:func:`medgen.training.loop.fit` (progress bar with ETA, ``--log-dir`` TensorBoard, bf16 with
``--amp``), shared with every other single-network fit. Every random choice comes from ``--seed``.
The shipped weights' card records the exact command, device and wall time.

Training data (all built in, nothing downloaded): the MNI152 T1 at 1 and 2 mm in its own contrast and
random synthetic contrasts, and ``--ct`` noise-free CT phantoms at 2-4.5 mm voxels, for
``--ct-fraction`` of the crops; random flips and axis permutations; noise: Rician (75 % of MR crops)
or Gaussian (CT and the other MR crops), std log-uniform in 0.5 %-20 % of the brightest tissue; the
network is told the std with a +-10 % error, as the estimator at run time would give. Targets are the
clean crops; the loss is the mean squared error in normalised units (PSNR).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from medgen.enhance.pretrained import load_denoiser
from medgen.enhance.training_data import Source, flip_and_permute, load_sources, random_contrast, random_crop
from medgen.models.enhancers import DENOISER_FEATURES, Denoiser3d
from medgen.models.hub import SHIPPED_DIR
from medgen.models.task_network import training_record, write_task_network
from medgen.training.loop import Phase, cosine, fit

SIGMA_RANGE = (0.005, 0.20)


def sample_batch(sources: list[Source], gen: torch.Generator, batch: int, crop: int,
                 ct_fraction: float) -> tuple[torch.Tensor, ...]:
    """``(noisy, clean, sigma_told)``: ``(B, 1, crop, crop, crop)`` twice and ``(B,)``, on the sources' device.

    CT crops get Gaussian noise (HU noise; Poisson-Gaussian noise is made Gaussian by the Anscombe
    transform at run time), MR crops Rician (75 %) or Gaussian noise.
    """
    mr = [s for s in sources if s.kind == "mr"]
    ct = [s for s in sources if s.kind == "ct"]
    device = sources[0].channels.device
    clean, rician = [], []
    for _ in range(batch):
        is_ct = bool(ct) and (not mr or torch.rand(1, generator=gen).item() < ct_fraction)
        if is_ct:
            src = ct[int(torch.randint(len(ct), (1,), generator=gen))]
            x = random_crop(src, (crop,) * 3, gen)[0]
        else:  # the 1 mm template (more anatomy) is drawn 3 times as often as the 2 mm one
            src = mr[0] if len(mr) == 1 or torch.rand(1, generator=gen).item() < 0.75 else mr[-1]
            x = random_contrast(random_crop(src, (crop,) * 3, gen), gen)
        clean.append(flip_and_permute(x, gen))
        rician.append(not is_ct and torch.rand(1, generator=gen).item() < 0.75)
    clean_t = torch.stack(clean)[:, None].contiguous()
    log_lo, log_hi = np.log(SIGMA_RANGE)
    sigma = torch.exp(log_lo + (log_hi - log_lo) * torch.rand(batch, generator=gen)).to(device)
    s = sigma.reshape(-1, 1, 1, 1, 1)
    noise = torch.randn((2, *clean_t.shape), generator=gen).to(device) * s
    mag = torch.sqrt((clean_t + noise[0]) ** 2 + noise[1] ** 2)
    is_rician = torch.tensor(rician, device=device).reshape(-1, 1, 1, 1, 1)
    noisy = torch.where(is_rician, mag, clean_t + noise[0])
    told = sigma * (0.9 + 0.2 * torch.rand(batch, generator=gen).to(device))
    return noisy, clean_t, told


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=2500)
    parser.add_argument("--time-budget", type=float, default=None, help="stop after this many seconds of training")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--crop", type=int, default=32, help="cubic crop edge (voxels)")
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--amp", action="store_true", help="bfloat16 autocast (CUDA)")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads (1 is fastest on a shared 2-core machine)")
    parser.add_argument("--workers", type=int, default=1, help="processes drawing the CT phantoms")
    parser.add_argument("--ct", type=int, default=10, help="number of CT phantoms")
    parser.add_argument("--ct-fraction", type=float, default=0.3, help="share of crops from the CT phantoms")
    parser.add_argument("--init", default=None, help="start from these weights (a shipped name or a folder)")
    parser.add_argument("--features", default=",".join(map(str, DENOISER_FEATURES)),
                        help="BasicUNet feature sizes of a fresh network (6 ints; ignored with --init)")
    parser.add_argument("--name", default="denoiser3d")
    parser.add_argument("--out", type=Path, default=SHIPPED_DIR, help="writes the model folder OUT/NAME")
    parser.add_argument("--checkpoint", type=Path, default=None,
                        help="exact-resume checkpoint folder (written every --checkpoint-every seconds and at the end)")
    parser.add_argument("--checkpoint-every", type=float, default=None, help="also save every this many seconds")
    parser.add_argument("--resume", action="store_true", help="continue from --checkpoint")
    parser.add_argument("--log-dir", type=Path, default=None, help="TensorBoard folder")
    parser.add_argument("--overwrite", action="store_true")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    gen = torch.Generator().manual_seed(args.seed)
    t0 = time.time()
    sources = load_sources((args.crop,) * 3, ct=args.ct if args.ct_fraction > 0 else 0, device=args.device,
                           workers=args.workers)
    print(f"{len(sources)} training volumes ready in {time.time() - t0:.0f}s", flush=True)
    features = tuple(int(f) for f in args.features.split(","))
    net = load_denoiser(args.init).network if args.init else Denoiser3d(features)
    net = net.to(args.device)
    running, identity = [], []

    def loss_at(step: int) -> torch.Tensor:
        noisy, clean, sigma = sample_batch(sources, gen, args.batch, args.crop, args.ct_fraction)
        identity.append(torch.mean((noisy - clean) ** 2).detach())
        return torch.mean((net(noisy, sigma).float() - clean) ** 2)

    def report(step: int, loss: float) -> None:
        running.append(loss)
        if (step + 1) % 100 == 0:
            mse, base = float(np.mean(running[-100:])), torch.stack(identity[-100:]).mean().item()
            del identity[:-100]
            print(f"step {step + 1}  loss {mse:.2e}  ~PSNR {-10 * np.log10(mse):.2f} dB "
                  f"(+{10 * np.log10(base / mse):.2f} dB over the noisy input)  {time.time() - start:.0f}s", flush=True)

    start = time.time()
    result = fit([Phase(net, loss_at, lr=args.lr)], steps=args.steps, schedule=cosine(final=0.02, warmup=0.05),
                 time_budget_s=args.time_budget, bf16=args.amp and args.device.startswith("cuda"), device=args.device,
                 callback=report, progress=args.name, log_dir=args.log_dir, log_every=100,
                 checkpoint=args.checkpoint, checkpoint_every_s=args.checkpoint_every, resume=args.resume,
                 generators=[gen],
                 on_checkpoint=lambda step: save(net, args, step, running, start, overwrite=True))
    card = save(net, args, result.step, running, start,
                overwrite=args.overwrite or args.checkpoint is not None)
    print(json.dumps(card["training"], indent=1))


def save(net: Denoiser3d, args: argparse.Namespace, step: int, running: list, start: float, *,
         overwrite: bool) -> dict:
    """Write the model folder ``--out``/``--name`` (weights, config, card, model_card.md); returns the card."""
    config = {
        "architecture": "Denoiser3d",
        "network": {"features": list(net.features)},
        "normalisation": "x_norm = (x - p0.5) / (p99.5 - p0.5) over the whole scan; sigma in the same units",
        "noise": {
            "models": ["rician", "gaussian", "poisson (through the Anscombe transform)"],
            "sigma_range_of_bright_tissue": list(SIGMA_RANGE),
        },
    }
    card = {
        "name": args.name,
        "description": "blind 3D denoising, noise std estimated from the scan and given as a second channel",
        "parameters": sum(p.numel() for p in net.parameters()),
        "training": {
            "data": "MNI152 2009a T1 at 1 and 2 mm (nilearn files via medgen.data.mni152), own T1 contrast "
            "with random gamma and random synthetic tissue contrasts from its CSF/GM/WM maps; "
            f"{args.ct_fraction:.0%} of crops from {args.ct} noise-free CT phantoms (medgen.data.ct_phantom, "
            "seeds 1000.., 2-4.5 mm)",
            "init": args.init,
            "crop": args.crop, "batch": args.batch, "steps": step, "lr": args.lr, "seed": args.seed,
            "amp": bool(args.amp), "threads": args.threads, "loss": "MSE",
            "script": "scripts/train_denoiser.py", **training_record(args.device, start),
        },
        "metrics": {"train_mse_final": float(np.mean(running[-100:])) if running else None},
        "metrics_source": "train_mse_final: mean of the last 100 training losses, normalised units.",
        "limitations": "Anatomy seen in training is the MNI152 template itself (benchmarks on it are not held "
        "out) and procedural CT phantoms, no patient scans.",
        "license": "Apache-2.0",
    }
    write_task_network(args.out / args.name, network=net, config=config, card=card, overwrite=overwrite)
    return card


if __name__ == "__main__":
    main()
