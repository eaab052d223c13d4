"""Train the pretrained slice super-resolution networks shipped as the model folders ``medgen/weights/superres2d*/``.

Two networks come out of one run (both :class:`medgen.models.enhancers.SliceSR2d`, conditioned on
the factor):

- ``superres2d``: L1 loss on (degraded, sharp) 2D patches, for the first ``1 - --gan-fraction`` of
  the budget;
- ``superres2d-gan``: that network refined for the rest of the budget with an adversarial term (MONAI
  ``PatchDiscriminator``, least-squares ``PatchAdversarialLoss``, weight ``--adv-weight``) besides the
  L1 loss: sharper detail, lower PSNR.

Training pairs are made on the device from 60³ crops of the built-in volumes
(:mod:`medgen.enhance.training_data`: the MNI152 T1 in random contrasts and CT phantoms), randomly
flipped and permuted; a slice's first axis is degraded exactly as a thick-slice scan then cubic
interpolation would (:func:`medgen.enhance.superres.degrade`, box profile, factor drawn from
``--factors``; 60 is a multiple of 2-6), written as a 60 x 60 matrix so it runs on the GPU; 30 % of
inputs get faint Gaussian noise (std up to 1 % of the brightest tissue).

``--real brain1,lung1`` adds acquired scans (``benchmarks/real_scans.py``: fetched once from public
packages' archives) for ``--real-fraction`` of the slices: 60 x 60 patches of their *in-plane* slices
(0.6-0.8 mm, the only sharp directions of a 5-6.5 mm slice scan), with their own noise and texture,
degraded along either in-plane axis. The other acquired scans stay out for the benchmarks.
``--init superres2d`` starts from a shipped network (fine-tuning).

    python scripts/train_superres.py --device cuda --amp --time-budget 360 --out runs/sr
    python scripts/train_superres.py --init superres2d --real brain1,lung1 --steps 3000 --gan-fraction 0 \
        --out runs/sr-real
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from monai.losses import PatchAdversarialLoss
from monai.networks.nets import PatchDiscriminator

from medgen.enhance.pretrained import DEFAULT_SUPERRES, GAN_SUPERRES
from medgen.enhance.superres import degrade
from medgen.enhance.training_data import Source, flip_and_permute, load_sources, random_contrast, random_crop
from medgen.models.enhancers import SliceSR2d
from medgen.models.hub import SHIPPED_DIR
from medgen.models.task_network import training_record, write_task_network
from medgen.training.loop import Phase, cosine, fit

PATCH = 60


def degradation_matrices(factors: list[int], device: str) -> dict[int, torch.Tensor]:
    """``{factor: (PATCH, PATCH)}``: ``M @ column`` thick-samples and cubic-interpolates a column back."""
    eye = np.eye(PATCH, dtype=np.float32)
    return {f: torch.from_numpy(degrade(eye, f, 0)).to(device) for f in factors}


def real_slices(names: list[str], device: str) -> list[torch.Tensor]:
    """In-plane slices ``(Z, X, Y)`` of acquired scans, normalised as inference normalises a scan."""
    import sys

    from medgen.enhance.denoise import Normalisation

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    from real_scans import load_case

    out = []
    for name in names:
        image = load_case(name).image
        if min(image.shape[:2]) < PATCH:
            raise SystemExit(f"--real {name}: in-plane {image.shape[:2]} is smaller than {PATCH}")
        out.append(torch.from_numpy(Normalisation.of(image).forward(image)).permute(2, 0, 1).contiguous().to(device))
    return out


def real_patches(real: list[torch.Tensor], n: int, gen: torch.Generator) -> torch.Tensor:
    """``n`` random ``(PATCH, PATCH)`` in-plane patches with some tissue, randomly flipped and transposed."""
    out = []
    while len(out) < n:
        vol = real[int(torch.randint(len(real), (1,), generator=gen))]
        z, x, y = (int(torch.randint(m, (1,), generator=gen)) for m in
                   (vol.shape[0], vol.shape[1] - PATCH + 1, vol.shape[2] - PATCH + 1))
        patch = vol[z, x : x + PATCH, y : y + PATCH]
        if float(patch.std()) < 0.02:  # air or background only
            continue
        if torch.rand(1, generator=gen).item() < 0.5:
            patch = patch.T
        flips = [d for d in (0, 1) if torch.rand(1, generator=gen).item() < 0.5]
        out.append(patch.flip(flips) if flips else patch)
    return torch.stack(out)


def sample_batch(sources: list[Source], gen: torch.Generator, batch: int, factors: list[int],
                 mats: dict[int, torch.Tensor], ct_fraction: float, real: list[torch.Tensor] | None = None,
                 real_fraction: float = 0.0) -> tuple[torch.Tensor, ...]:
    """``(degraded, sharp, factor)``: ``(B, 1, PATCH, PATCH)`` twice and ``(B,)``; slices of 4 crops each."""
    mr = [s for s in sources if s.kind == "mr"]
    ct = [s for s in sources if s.kind == "ct"]
    per = 4
    sharp = []
    n_real = int(round(batch * real_fraction)) if real else 0
    if n_real:
        sharp.append(real_patches(real, n_real, gen))
    for _ in range((batch - n_real) // per):
        is_ct = bool(ct) and (not mr or torch.rand(1, generator=gen).item() < ct_fraction)
        pool = ct if is_ct else mr
        src = pool[int(torch.randint(len(pool), (1,), generator=gen))]
        crop = random_crop(src, (PATCH,) * 3, gen)
        vol = flip_and_permute(crop[0] if is_ct else random_contrast(crop, gen), gen)
        idx = torch.randint(PATCH, (per,), generator=gen).tolist()
        sharp.append(vol[:, :, idx].permute(2, 0, 1))
    sharp_t = torch.cat(sharp)[:, None].float()
    f = torch.tensor(factors)[torch.randint(len(factors), (len(sharp_t),), generator=gen)]
    mat = torch.stack([mats[int(k)] for k in f])  # (B, P, P)
    degraded = torch.einsum("bij,bcjw->bciw", mat, sharp_t)
    noisy = (torch.rand(len(sharp_t), generator=gen) < 0.3).float() * 0.01 * torch.rand(len(sharp_t), generator=gen)
    degraded = degraded + torch.randn(degraded.shape, generator=gen).to(degraded.device) * noisy.to(
        degraded.device).reshape(-1, 1, 1, 1)
    return degraded, sharp_t, f.float().to(sharp_t.device)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=2000, help="total steps (L1 then GAN)")
    parser.add_argument("--time-budget", type=float, default=None, help="stop after this many seconds of training")
    parser.add_argument("--gan-fraction", type=float, default=0.3, help="share of steps/time for the GAN refinement")
    parser.add_argument("--adv-weight", type=float, default=0.01)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--factors", default="2,3,4,5,6")
    parser.add_argument("--channels", type=int, default=48)
    parser.add_argument("--blocks", type=int, default=8)
    parser.add_argument("--lr", type=float, default=5e-4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--amp", action="store_true", help="bfloat16 autocast (CUDA)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--workers", type=int, default=1, help="processes drawing the CT phantoms")
    parser.add_argument("--ct", type=int, default=6)
    parser.add_argument("--ct-fraction", type=float, default=0.3)
    parser.add_argument("--out", type=Path, default=SHIPPED_DIR, help="writes the model folders OUT/superres2d*")
    parser.add_argument("--overwrite", action="store_true")
    parser.add_argument("--init", default=None, help="start from this model (shipped name or folder)")
    parser.add_argument("--real", default="", help="acquired scans to learn in-plane detail from, e.g. brain1,lung1")
    parser.add_argument("--real-fraction", type=float, default=0.5, help="share of each batch from --real")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    gen = torch.Generator().manual_seed(args.seed)
    factors = [int(f) for f in args.factors.split(",")]
    t0 = time.time()
    sources = load_sources((PATCH,) * 3, ct=args.ct if args.ct_fraction > 0 else 0, device=args.device,
                           workers=args.workers)
    mats = degradation_matrices(factors, args.device)
    print(f"{len(sources)} training volumes ready in {time.time() - t0:.0f}s", flush=True)
    real_names = [n for n in args.real.split(",") if n]
    real = real_slices(real_names, args.device) if real_names else None
    if args.init:
        from medgen.enhance.pretrained import load_superres

        net = load_superres(args.init).network.to(args.device).train()
    else:
        net = SliceSR2d(args.channels, args.blocks).to(args.device).train()
    disc = PatchDiscriminator(spatial_dims=2, num_layers_d=3, channels=32, in_channels=1, out_channels=1)
    disc = disc.to(args.device)
    adv = PatchAdversarialLoss(criterion="least_squares")
    bf16 = args.amp and args.device.startswith("cuda")
    l1_log: list[float] = []
    current: dict[str, torch.Tensor] = {}  # the generator phase's batch and output, for the discriminator

    def l1_at(step: int, with_adv: bool = False) -> torch.Tensor:
        degraded, sharp, f = sample_batch(sources, gen, args.batch, factors, mats, args.ct_fraction, real,
                                          args.real_fraction)
        pred = net(degraded, f).float()
        l1 = torch.mean(torch.abs(pred - sharp))
        l1_log.append(float(l1.detach()))
        current.update(pred=pred.detach(), sharp=sharp)
        if not with_adv:
            return l1
        return l1 + args.adv_weight * adv(disc(pred)[-1], target_is_real=True, for_discriminator=False).float()

    def disc_at(step: int) -> torch.Tensor:
        fake = adv(disc(current["pred"])[-1], target_is_real=False, for_discriminator=True)
        real = adv(disc(current["sharp"])[-1], target_is_real=True, for_discriminator=True)
        return (0.5 * (fake + real)).float()

    def report(step: int, loss: float) -> None:
        if (step + 1) % 100 == 0:
            print(f"step {step + 1}  L1 {np.mean(l1_log[-100:]):.4f}  loss {loss:.4f}  {time.time() - start:.0f}s",
                  flush=True)

    # Stage 1 (L1, cosine to 2 %) then stage 2 (L1 + adversarial, constant 10 % LR, with the
    # discriminator), each with its share of the steps and of the time budget.
    start = time.time()
    l1_steps = round(args.steps * (1 - args.gan_fraction))
    budget = (lambda share: args.time_budget * share) if args.time_budget else (lambda share: None)
    common = dict(bf16=bf16, device=args.device, callback=report, generators=[gen])
    first = fit([Phase(net, l1_at, lr=args.lr)], steps=l1_steps, schedule=cosine(final=0.02),
                time_budget_s=budget(1 - args.gan_fraction), progress="superres2d (L1)", **common)
    save(net, args, DEFAULT_SUPERRES, first.step, l1_log, start, factors)
    if args.gan_fraction > 0:
        gan_steps = args.steps - l1_steps
        second = fit([Phase(net, lambda step: l1_at(step, with_adv=True), lr=args.lr * 0.1, name="generator"),
                      Phase(disc, disc_at, lr=args.lr * 0.5, betas=(0.5, 0.999), name="discriminator")],
                     steps=gan_steps, time_budget_s=budget(args.gan_fraction), progress="superres2d-gan", **common)
        save(net, args, GAN_SUPERRES, first.step + second.step, l1_log, start, factors, gan_steps=second.step)


def save(net: SliceSR2d, args: argparse.Namespace, name: str, step: int, l1_log: list, start: float,
         factors: list[int], gan_steps: int = 0) -> None:
    real_names = [n for n in args.real.split(",") if n]
    """Write the model folder ``--out``/``name`` (weights, config.json, card.json, model_card.md)."""
    config = {
        "architecture": "SliceSR2d",
        "network": {"channels": net.channels, "blocks": net.blocks},
        "factors": factors,
        "normalisation": "x_norm = (x - p0.5) / (p99.5 - p0.5) over the whole scan",
    }
    card = {
        "name": name,
        "description": "through-plane super-resolution of a cubic-interpolated slice along its first axis; "
        "box slice profile of the given factor" + ("; refined with an adversarial term: sharper, less faithful "
                                                   "detail" if gan_steps else ""),
        "parameters": sum(p.numel() for p in net.parameters()),
        "training": {
            "data": "60x60 slices of 60^3 crops of the MNI152 2009a T1 (1 and 2 mm) in random T1 / synthetic "
            f"contrasts and, for {args.ct_fraction:.0%} of crops, {args.ct} noise-free CT phantoms (seeds 1000..)"
            + (f"; {args.real_fraction:.0%} of each batch: 60x60 in-plane patches of the acquired scans "
               f"{', '.join(real_names)} (benchmarks/real_scans.py)" if real_names else ""),
            "init": args.init,
            "loss": "L1" + (f" + {args.adv_weight} x least-squares PatchGAN for the last {gan_steps} steps"
                            if gan_steps else ""),
            "steps": step, "batch": args.batch, "lr": args.lr, "seed": args.seed, "amp": bool(args.amp),
            "script": "scripts/train_superres.py", **training_record(args.device, start),
        },
        "metrics": {"train_l1_final": float(np.mean(l1_log[-100:])) if l1_log else None},
        "metrics_source": "train_l1_final: mean L1 of the last 100 training steps, normalised units.",
        "limitations": "Anatomy seen in training is the MNI152 template itself (benchmarks on it are not held "
        "out) and procedural CT phantoms; box slice profiles only.",
        "license": "Apache-2.0",
    }
    write_task_network(args.out / name, network=net, config=config, card=card, overwrite=args.overwrite)
    print(f"saved {name} at step {step}", flush=True)
    print(json.dumps(card["training"], indent=1), flush=True)


if __name__ == "__main__":
    main()
