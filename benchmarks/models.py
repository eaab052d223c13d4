"""Benchmark of medgen's model families on the built-in brain cohort (3 mm), in one run.

For each family: training time to a fixed step count, sampling time per volume, and sample quality
against held-out real subjects: feature MMD and FID (:mod:`medgen.evaluate.generation`, on the
shipped self-supervised 3D network ``medgen-ssl3d-v1``; MMD is dimensionless in [0, 2], lower is
closer) and MS-SSIM among samples (MONAI; lower is more diverse). Baseline in the same run: the
training subjects themselves scored against the held-out ones (what a perfect model would reach with
this many samples), and the average training image repeated (what the GAN's and the diffusion
models' ``mean_image`` start from: a model must add realistic variation to beat it).

Diffusion: the epsilon model sampled with DDPM-1000 and DDIM-50, and a rectified-flow model (same
network, data and steps, velocity objective) sampled with RFlow-10: a velocity model cannot be sampled
with DDPM, nor an epsilon model with the RFlow solver, so these are two models trained alike.

    python benchmarks/models.py --steps 300 --diffusion-steps 300 --num 4 --out /tmp/medgen_bench
"""

from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path

import torch

from medgen.evaluate.generation import feature_name, fid, mmd, ms_ssim_diversity
from medgen.models import load_model
from medgen.synthesize import synthesize
from medgen.training import parse_config, train
from medgen.training.data import prepare_data

# At least 16 channels at full resolution: PyTorch's oneDNN 3D convolution backward is many times
# slower for fewer input channels on CPU.
UNET = {"channels": [16, 32, 32], "attention": [False, False, False], "norm_num_groups": 8, "mean_image": True}
NETS = {
    "vae": {"vae": {"channels": [16, 32, 32], "latent_channels": 3, "norm_num_groups": 8, "mean_image": True}},
    "gan": {"gan": {"latent_dim": 64, "channels": [64, 32, 16, 16], "disc_channels": 16, "disc_layers": 3,
                    "mean_image": True}},
    "ddpm": {"diffusion": {**UNET, "objective": "epsilon"}},
    "rflow": {"diffusion": {**UNET, "objective": "rflow"}},
}
SAMPLERS = {"vae": [("prior", None)], "gan": [("single-pass", None)], "ddpm": [("ddpm", 1000), ("ddim", 50)],
            "rflow": [("rflow", 10)]}


def config(name: str, args) -> dict:
    family = "diffusion" if name in ("ddpm", "rflow") else name
    gan = name == "gan"
    steps = args.diffusion_steps if name in ("ddpm", "rflow") else args.steps
    return {
        "name": f"bench_{name}",
        "model": {"family": family, "size": args.size, **NETS[name]},
        "data": {"source": "brain", "n_subjects": args.subjects + args.num, "val_subjects": args.num,
                 "resolution": 3, "downsample": args.downsample},
        "train": {"steps": steps, "batch_size": 4 if gan else 2, "lr": 2e-4 if gan else 1e-3, "val_every": 0,
                  "checkpoint_every": 0, "ema_decay": 0.99, "lr_schedule": "constant",
                  "betas": [0.0, 0.99] if gan else [0.9, 0.999], "grad_clip": 0.0 if gan else 1.0},
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=300, help="training steps of the VAE and GAN")
    p.add_argument("--diffusion-steps", type=int, default=300, help="training steps of each diffusion model")
    p.add_argument("--subjects", type=int, default=8, help="training subjects")
    p.add_argument("--num", type=int, default=4, help="held-out subjects = samples per sampler")
    p.add_argument("--downsample", type=int, default=2)
    p.add_argument("--size", type=int, nargs=3, default=[32, 40, 32])
    p.add_argument("--families", nargs="+", default=["gan", "rflow", "ddpm", "vae"], choices=list(NETS))
    p.add_argument("--out", type=Path, default=Path("/tmp/medgen_bench"))
    args = p.parse_args()
    shutil.rmtree(args.out, ignore_errors=True)
    rows = []
    data = prepare_data(parse_config(config("gan", args)))
    real = torch.stack([v["image"] for v in data.val])
    train_real = torch.stack([data.train[i]["image"] for i in range(min(len(data.train), args.num))])
    for name in args.families:
        cfg = parse_config(config(name, args))
        t0 = time.perf_counter()
        result = train(cfg, args.out / name, device="cpu", progress=False)
        train_s = time.perf_counter() - t0
        model = load_model(result.model_dir)
        for sampler, steps in SAMPLERS[name]:
            kw = {"sampler": sampler, "steps": steps} if name in ("ddpm", "rflow") else {}
            t0 = time.perf_counter()
            scans = synthesize(model, args.num, seed=100, **kw)
            per = (time.perf_counter() - t0) / args.num
            fake = torch.stack([model.normalization.to_model(s.as_tensor()) for s in scans])
            label = f"{sampler}-{steps}" if steps else sampler
            rows.append((name, label, cfg.train.steps, train_s, per, mmd(real, fake), fid(real, fake),
                         ms_ssim_diversity(fake)))
            print("done", " | ".join(f"{v:.4g}" if isinstance(v, float) else str(v) for v in rows[-1]), flush=True)
    print(f"\nbrain cohort 3 mm, downsampled x{args.downsample} -> {args.size} voxels, {args.subjects} train / "
          f"{args.num} held-out subjects, {args.num} samples per row, batch 4 (GAN) / 2, CPU "
          f"{torch.get_num_threads()} threads\nfeatures: {feature_name()}\n")
    print("| family | sampler | train steps | train time (s) | sampling (s/volume) | feature MMD vs held-out "
          "| feature FID | MS-SSIM diversity |")
    print("|---|---|---|---|---|---|---|---|")
    for name, label, steps, tr, per, m, f, div in rows:
        print(f"| {name} | {label} | {steps} | {tr:.0f} | {per:.3f} | {m:.3f} | {f:.1f} | {div:.3f} |")
    print(f"| baseline: training subjects | - | - | - | - | {mmd(real, train_real):.3f} | {fid(real, train_real):.1f} "
          f"| {ms_ssim_diversity(train_real):.3f} |")
    mean = torch.stack([v["image"] for v in data.train]).mean(0, keepdim=True).expand(args.num, -1, -1, -1, -1)
    print(f"| baseline: average training image | - | - | - | - | {mmd(real, mean):.3f} | {fid(real, mean):.1f} "
          f"| {ms_ssim_diversity(mean):.3f} |")
    print(f"| real held-out | - | - | - | - | - | - | {ms_ssim_diversity(real):.3f} |")


if __name__ == "__main__":
    main()
