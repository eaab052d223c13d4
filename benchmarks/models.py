"""Benchmark of medgen's model families on the built-in brain cohort (3 mm), in one run.

For each family: training time to a fixed step count, sampling time per volume, and sample quality
against held-out real subjects (MMD, lower is closer; MS-SSIM among samples, lower is more diverse).
For diffusion, the epsilon model sampled with DDPM-1000 and DDIM-50, and a rectified-flow model of the
same network and steps sampled with RFlow-10 (a velocity model cannot be sampled with DDPM, nor an
epsilon model with the RFlow solver). Prints a markdown table.

    python benchmarks/models.py --steps 60 --downsample 2 --num 3 --out /tmp/medgen_bench
"""

from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path

import torch

from medgen.evaluate.generation import mmd, ms_ssim_diversity
from medgen.models import load_model
from medgen.synthesize import synthesize
from medgen.training import parse_config, train
from medgen.training.data import prepare_data

NETS = {
    "vae": {"vae": {"channels": [8, 16, 32], "latent_channels": 3, "norm_num_groups": 8}},
    "gan": {"gan": {"latent_dim": 64, "channels": [64, 32, 16, 8], "disc_channels": 8, "disc_layers": 3}},
    "ddpm": {"diffusion": {"channels": [8, 16, 32], "attention": [False, False, False], "norm_num_groups": 8,
                           "objective": "epsilon"}},
    "rflow": {"diffusion": {"channels": [8, 16, 32], "attention": [False, False, False], "norm_num_groups": 8,
                            "objective": "rflow"}},
}


def config(name: str, args) -> dict:
    family = "diffusion" if name in ("ddpm", "rflow") else name
    gan = name == "gan"
    return {
        "name": f"bench_{name}",
        "model": {"family": family, "size": args.size, **NETS[name]},
        "data": {"source": "brain", "n_subjects": args.subjects + args.num, "val_subjects": args.num,
                 "resolution": 3, "downsample": args.downsample},
        "train": {"steps": args.steps, "batch_size": 2, "lr": 2e-4 if gan else 1e-3, "val_every": 0,
                  "checkpoint_every": 0, "ema_decay": 0.9, "lr_schedule": "constant",
                  "betas": [0.0, 0.99] if gan else [0.9, 0.999], "grad_clip": 0.0 if gan else 1.0},
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=60)
    p.add_argument("--subjects", type=int, default=10, help="training subjects")
    p.add_argument("--num", type=int, default=3, help="held-out subjects = samples per sampler")
    p.add_argument("--downsample", type=int, default=2)
    p.add_argument("--size", type=int, nargs=3, default=[32, 40, 32])
    p.add_argument("--ddpm-steps", type=int, default=1000)
    p.add_argument("--out", type=Path, default=Path("/tmp/medgen_bench"))
    args = p.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    shutil.rmtree(args.out, ignore_errors=True)
    rows = []
    real = None
    for name in ("vae", "gan", "ddpm", "rflow"):
        cfg = parse_config(config(name, args))
        if real is None:
            real = torch.stack([v["image"] for v in prepare_data(cfg).val])
        t0 = time.perf_counter()
        result = train(cfg, args.out / name, device="cpu", progress=False)
        train_s = time.perf_counter() - t0
        model = load_model(result.model_dir)
        samplers = {"vae": [("prior", None)], "gan": [("single-pass", None)], "ddpm": [("ddpm", args.ddpm_steps),
                    ("ddim", 50)], "rflow": [("rflow", 10)]}[name]
        for sampler, steps in samplers:
            kw = {"sampler": sampler, "steps": steps} if name in ("ddpm", "rflow") else {}
            t0 = time.perf_counter()
            scans = synthesize(model, args.num, seed=100, **kw)
            per = (time.perf_counter() - t0) / args.num
            fake = torch.stack([model.normalization.to_model(s.as_tensor()) for s in scans])
            label = f"{sampler}-{steps}" if steps else sampler
            rows.append((name, label, train_s, per, mmd(real, fake), ms_ssim_diversity(fake)))
            print(f"done {name} {label}: {per:.2f} s/volume", flush=True)
    print(f"\nbrain cohort 3 mm, downsample {args.downsample} -> {args.size}, {args.subjects} train / {args.num} "
          f"held-out subjects, {args.steps} steps, batch 2, CPU {torch.get_num_threads()} threads\n")
    print("| family | sampler | train time (s) | sampling (s/volume) | MMD vs held-out | MS-SSIM diversity |")
    print("|---|---|---|---|---|---|")
    for name, label, tr, per, m, div in rows:
        print(f"| {name} | {label} | {tr:.0f} | {per:.3f} | {m:.4g} | {div:.3f} |")
    real_div = ms_ssim_diversity(real)
    print(f"| real (held-out) | - | - | - | - | {real_div:.3f} |")


if __name__ == "__main__":
    main()
