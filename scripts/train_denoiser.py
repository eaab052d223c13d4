"""Train the pretrained blind 3D denoiser shipped as ``medgen/weights/denoiser3d.safetensors``.

Runs on a CPU or a GPU (``--device cuda``; crops are cut and noised on the device, see
:mod:`medgen.enhance.training_data`). ``--time-budget`` stops at a wall-clock limit (the learning
rate schedule follows whichever of steps and time runs out first) and ``--checkpoint-every`` writes
the model as it goes, so a run killed at a limit still leaves weights. Every random choice comes
from ``--seed``. The shipped weights' card records the exact command, device and wall time.

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

from medgen.enhance.networks import DENOISER_FEATURES, Denoiser3d
from medgen.enhance.pretrained import WEIGHTS_DIR, load_denoiser, save_model, training_record
from medgen.enhance.training_data import Source, flip_and_permute, load_sources, random_contrast, random_crop

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


def learning_rate(lr: float, progress: float, warmup: float = 0.05) -> float:
    """Linear warm-up over the first ``warmup`` of training, then cosine decay to 2 % of ``lr``."""
    if progress < warmup:
        return lr * max(progress / warmup, 0.01)
    t = min((progress - warmup) / (1 - warmup), 1.0)
    return lr * (0.02 + 0.98 * 0.5 * (1 + np.cos(np.pi * t)))


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
    parser.add_argument("--out", type=Path, default=WEIGHTS_DIR, help="folder for NAME.safetensors + NAME.json")
    parser.add_argument("--checkpoint-every", type=float, default=None, help="also save every this many seconds")
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
    net = load_denoiser(args.init)[0] if args.init else Denoiser3d(features)
    net = net.to(args.device).train()
    opt = torch.optim.Adam(net.parameters(), lr=args.lr)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=args.amp and args.device.startswith("cuda"))
    start, running, identity, step = time.time(), [], [], 0
    last_save = start
    while step < args.steps and (args.time_budget is None or time.time() - start < args.time_budget):
        step += 1
        progress = step / args.steps
        if args.time_budget:
            progress = max(progress, (time.time() - start) / args.time_budget)
        for group in opt.param_groups:
            group["lr"] = learning_rate(args.lr, progress)
        noisy, clean, sigma = sample_batch(sources, gen, args.batch, args.crop, args.ct_fraction)
        with autocast:
            pred = net(noisy, sigma)
        loss = torch.mean((pred.float() - clean) ** 2)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        running.append(loss.detach())
        identity.append(torch.mean((noisy - clean) ** 2).detach())
        if step % 100 == 0:
            mse, base = torch.stack(running[-100:]).mean().item(), torch.stack(identity[-100:]).mean().item()
            running, identity = running[-100:], identity[-100:]
            print(f"step {step}  loss {mse:.2e}  ~PSNR {-10 * np.log10(mse):.2f} dB "
                  f"(+{10 * np.log10(base / mse):.2f} dB over the noisy input)  "
                  f"lr {opt.param_groups[0]['lr']:.1e}  {time.time() - start:.0f}s", flush=True)
        if args.checkpoint_every and time.time() - last_save > args.checkpoint_every:
            save(net, args, step, running, start, overwrite=True)
            last_save = time.time()
    card = save(net, args, step, running, start, overwrite=args.overwrite or bool(args.checkpoint_every))
    print(json.dumps(card["training"], indent=1))


def save(net: Denoiser3d, args: argparse.Namespace, step: int, running: list, start: float, *,
         overwrite: bool) -> dict:
    """Write ``NAME.safetensors`` + ``NAME.json`` (the model card) to ``--out``."""
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
            f"{args.ct_fraction:.0%} of crops from {args.ct} noise-free CT phantoms (medgen.data.ct_phantom, "
            "seeds 1000.., 2-4.5 mm)",
            "init": args.init,
            "crop": args.crop, "batch": args.batch, "steps": step, "lr": args.lr, "seed": args.seed,
            "amp": bool(args.amp), "threads": args.threads, "loss": "MSE",
            "final_loss": float(torch.stack(running[-100:]).mean()) if running else None,
            "script": "scripts/train_denoiser.py", **training_record(args.device, start),
        },
        "limitations": "Anatomy seen in training is the MNI152 template itself (benchmarks on it are not held "
        "out) and procedural CT phantoms, no patient scans.",
        "license": "Apache-2.0",
    }
    args.out.mkdir(parents=True, exist_ok=True)
    save_model(net, card, args.out / f"{args.name}.safetensors", args.out / f"{args.name}.json", overwrite=overwrite)
    return card


if __name__ == "__main__":
    main()
