"""Train medgen's shipped 3D feature network (FID/MMD features) self-supervised on the built-in cohort.

Data: ``brain_cohort`` subjects at 3 mm (half T1, half random T1/T2/PD contrast), a cohort seed
disjoint from the test/benchmark cohorts (seed 0/1). Each scan is percentile-normalised and
resized to 48^3, exactly as :func:`medgen.evaluate.features.prepare` does at use time.

Pretext tasks (labels are free): every training example is a random left-right flip of a subject,
rotated by one of 10 axis-aligned 90-degree rotations (identity + 3 angles x 3 planes) and hit by
one of 7 corruptions (none, Rician-like noise, blur, bias field, Gibbs ringing, k-space ghosting,
gamma). Two linear heads on the 128 pooled features predict the rotation (anatomy) and the
corruption (image quality; its loss weighted x2, as rotation alone is learnt within ~100 steps).
Only the encoder is shipped, as the model folder ``medgen/weights/features_ssl3d/`` (weights,
config.json, card.json with the training record and held-out accuracy, model_card.md).

Deterministic by ``--seed`` (data, augmentation and initialisation); single-threaded by default.

    python scripts/train_features.py                       # ~5 min on one CPU core
    python scripts/train_features.py --steps 50 --out /tmp/f   # smoke run
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from monai.transforms import GaussianSmooth, GibbsNoise
from torch import nn

from medgen.evaluate.features import SHIPPED_NAME, prepare
from medgen.models.features import FeatureNet3d
from medgen.models.hub import SHIPPED_DIR
from medgen.models.task_network import training_record, write_task_network
from medgen.training.loop import Phase, cosine, fit

INPUT_SIZE = (48, 48, 48)
CHANNELS = (16, 32, 64, 128)
CORRUPTIONS = ("none", "noise", "blur", "bias", "gibbs", "ghosting", "gamma")
N_ROTATIONS = 10


def rotate(x: torch.Tensor, k: int) -> torch.Tensor:
    """Rotation ``k`` of 10 of a ``(1, X, X, X)`` cube: 0 identity, else 90/180/270 deg in one of 3 planes."""
    if k == 0:
        return x
    plane = [(1, 2), (1, 3), (2, 3)][(k - 1) // 3]
    return torch.rot90(x, (k - 1) % 3 + 1, plane)


def corrupt(x: torch.Tensor, kind: int, g: torch.Generator) -> torch.Tensor:
    """Apply corruption ``CORRUPTIONS[kind]`` with a random strength to a ``(1, X, Y, Z)`` volume in [0, 1]."""
    u = float(torch.rand(1, generator=g))
    name = CORRUPTIONS[kind]
    if name == "noise":
        sigma = 0.03 + 0.09 * u
        n1, n2 = torch.randn(2, *x.shape, generator=g) * sigma
        x = torch.sqrt((x + n1) ** 2 + n2**2)
    elif name == "blur":
        x = GaussianSmooth(sigma=0.8 + 0.8 * u)(x)
    elif name == "bias":
        coarse = torch.randn(1, 1, 3, 3, 3, generator=g)
        field = F.interpolate(coarse, size=x.shape[1:], mode="trilinear", align_corners=True)[0]
        x = x * torch.exp((0.25 + 0.35 * u) * field / field.std().clamp_min(1e-6))
    elif name == "gibbs":
        x = GibbsNoise(alpha=0.55 + 0.3 * u)(x)
    elif name == "ghosting":
        axis = int(torch.randint(1, 4, (1,), generator=g))
        k = torch.fft.fftn(x, dim=(1, 2, 3))
        index = [slice(None)] * 4
        index[axis] = slice(None, None, int(torch.randint(2, 5, (1,), generator=g)))
        k[tuple(index)] *= 0.3 + 0.5 * u
        x = torch.fft.ifftn(k, dim=(1, 2, 3)).abs()
    elif name == "gamma":
        gamma = 0.4 + 0.25 * u if torch.rand(1, generator=g) < 0.5 else 1.8 + 0.8 * u
        x = x.clamp_min(0) ** gamma
    return x.clamp(0.0, 1.5)


def make_batch(pool: list[torch.Tensor], size: int, g: torch.Generator) -> tuple[torch.Tensor, ...]:
    xs, rots, cors = [], [], []
    for _ in range(size):
        x = pool[int(torch.randint(len(pool), (1,), generator=g))]
        if torch.rand(1, generator=g) < 0.5:
            x = torch.flip(x, (1,))
        r = int(torch.randint(N_ROTATIONS, (1,), generator=g))
        c = int(torch.randint(len(CORRUPTIONS), (1,), generator=g))
        xs.append(rotate(corrupt(x, c, g), r))
        rots.append(r)
        cors.append(c)
    return torch.stack(xs), torch.tensor(rots), torch.tensor(cors)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subjects", type=int, default=48)
    parser.add_argument("--steps", type=int, default=1200)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=1234)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=SHIPPED_DIR, help="writes the model folder OUT/features_ssl3d")
    parser.add_argument("--overwrite", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    try:
        from medgen.data import brain_cohort
    except ImportError:  # before medgen.data exports it
        from medgen.data.cohort import brain_cohort

    t0 = time.time()
    half = args.subjects // 2
    subjects = brain_cohort(half, resolution=3, seed=args.seed, contrast="t1")
    subjects += brain_cohort(args.subjects - half, resolution=3, seed=args.seed + 1, contrast="random")
    pool = [prepare(s["image"], INPUT_SIZE) for s in subjects]
    print(f"{len(pool)} subjects ready in {time.time() - t0:.0f}s")

    net = FeatureNet3d(CHANNELS)
    heads = nn.ModuleDict({"rotation": nn.Linear(net.out_features, N_ROTATIONS),
                           "corruption": nn.Linear(net.out_features, len(CORRUPTIONS))})
    g = torch.Generator().manual_seed(args.seed)
    log, acc = [], {"rotation": 0.0, "corruption": 0.0}

    def loss_at(step: int) -> torch.Tensor:
        x, rot, cor = make_batch(pool, args.batch, g)
        feats = net(x)
        logits_r, logits_c = heads["rotation"](feats), heads["corruption"](feats)
        for key, logits, y in (("rotation", logits_r, rot), ("corruption", logits_c, cor)):
            acc[key] = 0.95 * acc[key] + 0.05 * float((logits.argmax(1) == y).float().mean())
        return F.cross_entropy(logits_r, rot) + 2.0 * F.cross_entropy(logits_c, cor)  # quality is the harder task

    def report(step: int, loss: float) -> None:
        if (step + 1) % 50 == 0 or step + 1 == args.steps:
            log.append({"step": step + 1, "loss": round(loss, 4), **{k: round(v, 3) for k, v in acc.items()}})
            print(f"step {step + 1:5d} loss {loss:.3f} rot-acc {acc['rotation']:.2f} "
                  f"corr-acc {acc['corruption']:.2f}  {time.time() - t0:.0f}s", flush=True)

    both = nn.ModuleDict({"net": net, "heads": heads})
    fit([Phase(both, loss_at, lr=args.lr, weight_decay=1e-4)], steps=args.steps, schedule=cosine(), callback=report)

    # held-out check on fresh subjects (a different cohort seed): pretext accuracy without training noise
    net.eval()
    held = [prepare(s["image"], INPUT_SIZE) for s in brain_cohort(8, resolution=3, seed=args.seed + 2)]
    gh = torch.Generator().manual_seed(args.seed + 2)
    with torch.no_grad():
        x, rot, cor = make_batch(held, 64, gh)
        feats = net(x)
        held_acc = {"rotation": float((heads["rotation"](feats).argmax(1) == rot).float().mean()),
                    "corruption": float((heads["corruption"](feats).argmax(1) == cor).float().mean())}
    print(f"held-out pretext accuracy: {held_acc}")

    config = {
        "architecture": "FeatureNet3d",
        "network": {"channels": list(CHANNELS)},
        "input_size": list(INPUT_SIZE),
        "preprocessing": "channel 0, per-scan 0.5-99.5 percentile -> [0, 1], trilinear resize to input_size",
        "features": CHANNELS[-1],
    }
    card = {
        "name": "medgen-ssl3d-v1",
        "description": "self-supervised 3D feature network for FID/MMD between real and synthetic scan sets "
        "(pretext tasks: 90-degree rotation and image corruption)",
        "parameters": sum(p.numel() for p in net.parameters()),
        "training": {
            "script": "scripts/train_features.py",
            "data": f"medgen.data.brain_cohort 3 mm: {half} T1 (seed {args.seed}) + "
                    f"{args.subjects - half} random-contrast (seed {args.seed + 1})",
            "pretext": {"rotation_classes": N_ROTATIONS, "corruptions": list(CORRUPTIONS)},
            "steps": args.steps, "batch": args.batch, "lr": args.lr, "seed": args.seed,
            **training_record("cpu", t0), "log": log,
        },
        "metrics": {f"held_out_{k}_accuracy": v for k, v in held_acc.items()},
        "metrics_source": f"Pretext-task accuracy on 64 examples drawn from 8 subjects the network never saw "
        f"(brain_cohort seed {args.seed + 2}), measured by scripts/train_features.py at the end of training.",
        "limitations": "Trained on medgen's simulated brain cohort (one real brain, warped) at 3 mm only.",
        "license": "Apache-2.0",
    }
    folder = write_task_network(args.out / SHIPPED_NAME, network=net, config=config, card=card, half=False,
                                overwrite=args.overwrite)
    print(f"wrote {folder} ({(folder / 'model.safetensors').stat().st_size / 1e6:.2f} MB)")


if __name__ == "__main__":
    main()
