"""Does medgen augmentation earn its place? Low-data segmentation Dice and loader throughput, side by side.

Segmentation: a MONAI UNet is trained on 3 real-anatomy subjects of the built-in cohort (T1-like,
3 mm, CSF/GM/WM labels) with

  (a) no augmentation,
  (b) MONAI's standard spatial + intensity augmentation,
  (c) (b) + medgen augmentation (cohort diffeomorphism ``RandDeformd`` + ``RandMRArtifactsd``),

same steps, same seeds, several seeds; Dice per class on held-out T1 subjects and on held-out
subjects with a contrast and noise the training subjects never had (T2-like, PD-like, more noise).

Throughput: cases/s a training loop receives from (1) MONAI's standard pipeline on in-memory data,
(2) a synthetic pool on disk (``SyntheticPoolDataset``) with the same pipeline, (3) the equivalent
TorchIO pipeline, (4) the standard pipeline + medgen augmentation.

    python benchmarks/augment.py --steps 150 --seeds 0 1 2      # ~10 min on 2 CPU cores
    python benchmarks/augment.py --quick                         # ~2 min
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from monai.data import DataLoader, Dataset
from monai.inferers import sliding_window_inference
from monai.losses import DiceCELoss
from monai.metrics import DiceMetric
from monai.networks.nets import UNet
from monai.transforms import (
    Compose,
    EnsureTyped,
    NormalizeIntensityd,
    RandAdjustContrastd,
    RandAffined,
    RandFlipd,
    RandGaussianNoised,
    RandScaleIntensityd,
    RandSpatialCropd,
)
from monai.utils import set_determinism

from medgen.augment import RandDeformd, RandMRArtifactsd, SyntheticPoolDataset, write_pool
from medgen.data import brain_cohort, simulate_subject

PATCH = (48, 48, 48)
KEYS = ["image", "label"]


def standard_aug() -> list:
    """MONAI's usual spatial + intensity augmentation for brain MR segmentation."""
    return [
        RandAffined(KEYS, prob=0.5, rotate_range=(0.15,) * 3, scale_range=(0.1,) * 3, mode=("bilinear", "nearest"),
                    padding_mode="border"),
        RandFlipd(KEYS, prob=0.5, spatial_axis=0),
        RandScaleIntensityd("image", factors=0.2, prob=0.5),
        RandAdjustContrastd("image", prob=0.3, gamma=(0.7, 1.5)),
        RandGaussianNoised("image", prob=0.3, std=0.05),
    ]


def medgen_aug() -> list:
    return [RandDeformd(KEYS, mode=["bilinear", "nearest"], prob=0.7, strength=1.0),
            RandMRArtifactsd("image", prob=0.8)]


def pipeline(kind: str) -> Compose:
    pre = [EnsureTyped(KEYS, track_meta=False)]
    aug = {"none": [], "monai": standard_aug(), "monai+medgen": standard_aug() + medgen_aug()}[kind]
    # medgen before MONAI's intensity steps: artefacts, then the global intensity jitter
    if kind == "monai+medgen":
        aug = medgen_aug() + standard_aug()
    post = [NormalizeIntensityd("image", nonzero=False), RandSpatialCropd(KEYS, roi_size=PATCH, random_size=False)]
    return Compose(pre + aug + post)


def train_and_eval(kind: str, train: list, tests: dict[str, list], steps: int, seed: int) -> dict[str, np.ndarray]:
    set_determinism(seed=seed)
    net = UNet(3, 1, 4, channels=(8, 16, 32), strides=(2, 2), num_res_units=1)
    opt = torch.optim.Adam(net.parameters(), 3e-3)
    loss_fn = DiceCELoss(to_onehot_y=True, softmax=True)
    loader = DataLoader(Dataset(train, pipeline(kind)), batch_size=2, shuffle=True, num_workers=0)
    step = 0
    net.train()
    while step < steps:
        for batch in loader:
            opt.zero_grad()
            loss = loss_fn(net(batch["image"]), batch["label"].long())
            loss.backward()
            opt.step()
            step += 1
            if step >= steps:
                break
    net.eval()
    out = {}
    norm = Compose([EnsureTyped(KEYS, track_meta=False), NormalizeIntensityd("image")])
    for name, subjects in tests.items():
        metric = DiceMetric(include_background=False, reduction="mean_batch")
        for s in subjects:
            d = norm(dict(s))
            with torch.no_grad():
                logits = sliding_window_inference(d["image"][None], PATCH, 4, net, overlap=0.25)
            pred = torch.nn.functional.one_hot(logits.argmax(1), 4).movedim(-1, 1)
            ref = torch.nn.functional.one_hot(d["label"][None, 0].long(), 4).movedim(-1, 1)
            metric(pred, ref)
        out[name] = metric.aggregate().numpy()
    set_determinism(seed=None)
    return out


def segmentation(steps: int, seeds: list[int]) -> None:
    train = brain_cohort(3, resolution=3, seed=100, contrast="t1")
    tests = {
        "held-out T1": brain_cohort(3, resolution=3, seed=200, contrast="t1"),
        "shifted T2+noise": [simulate_subject(300 + i, 3, "t2", noise=0.06) for i in range(2)],
        "shifted PD+noise": [simulate_subject(400 + i, 3, "pd", noise=0.06) for i in range(2)],
    }
    rows = {}
    for kind in ("none", "monai", "monai+medgen"):
        runs = []
        for seed in seeds:
            t0 = time.time()
            runs.append(train_and_eval(kind, train, tests, steps, seed))
            print(f"  trained {kind:13s} seed {seed}: {time.time() - t0:.0f} s", flush=True)
        rows[kind] = runs
    print(f"\nDice x100 (CSF / GM / WM / mean), {len(seeds)} seeds (mean ± sd of the per-seed mean), {steps} steps")
    print(f"| aug | {' | '.join(tests)} |")
    print("|---|" + "---|" * len(tests))
    for kind, runs in rows.items():
        cells = []
        for name in tests:
            per_class = np.mean([r[name] for r in runs], axis=0) * 100
            means = [float(r[name].mean()) * 100 for r in runs]
            cells.append(f"{per_class[0]:.1f} / {per_class[1]:.1f} / {per_class[2]:.1f} / "
                         f"**{np.mean(means):.1f}** ± {np.std(means):.1f}")
        print(f"| {kind} | {' | '.join(cells)} |")


def _rate(dataset, n: int) -> float:
    loader = DataLoader(dataset, batch_size=1, shuffle=False, num_workers=0)
    t0 = time.time()
    count = 0
    for _ in loader:
        count += 1
        if count >= n:
            break
    return count / (time.time() - t0)


def throughput(n: int) -> None:
    subjects = brain_cohort(n, resolution=3, seed=500)
    standard = pipeline("monai")
    rows = {"MONAI standard (in memory)": _rate(Dataset(subjects, standard), n)}
    with tempfile.TemporaryDirectory() as tmp:
        pool = write_pool(Path(tmp) / "pool", lambda s: simulate_subject(s, 3), n, seed=0)
        rows["synthetic pool on disk + MONAI standard"] = _rate(SyntheticPoolDataset(pool, transform=standard), n)
    try:
        import torchio as tio

        tio_pipe = tio.Compose([tio.RandomAffine(scales=0.1, degrees=8.6, p=0.5), tio.RandomFlip(axes=(0,), p=0.5),
                                tio.RandomGamma(p=0.3), tio.RandomNoise(std=0.05, p=0.3),
                                tio.ZNormalization(), tio.CropOrPad(PATCH)])
        tio_subjects = [tio.Subject(image=tio.ScalarImage(tensor=s["image"].as_tensor(), affine=s["image"].affine),
                                    label=tio.LabelMap(tensor=s["label"].as_tensor(), affine=s["image"].affine))
                        for s in subjects]
        rows["TorchIO equivalent (in memory)"] = _rate(tio.SubjectsDataset(tio_subjects, transform=tio_pipe), n)
    except ImportError:
        rows["TorchIO equivalent (in memory)"] = float("nan")
    rows["MONAI standard + medgen (deform + MR artefacts)"] = _rate(Dataset(subjects, pipeline("monai+medgen")), n)
    base = rows["MONAI standard (in memory)"]
    print(f"\nThroughput, cases/s delivered to the loop (batch 1, 0 workers, 1 thread, {n} cases of 66x78x63)")
    print("| pipeline | cases/s | vs MONAI standard |")
    print("|---|---|---|")
    for name, rate in rows.items():
        print(f"| {name} | {rate:.1f} | {rate / base * 100:.0f} % |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--cases", type=int, default=12, help="cases for the throughput table")
    parser.add_argument("--quick", action="store_true", help="40 steps, 1 seed")
    parser.add_argument("--only", choices=["segmentation", "throughput"])
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.quick:
        args.steps, args.seeds, args.cases = 40, [0], 6
    if args.only != "segmentation":
        throughput(args.cases)
    if args.only != "throughput":
        segmentation(args.steps, args.seeds)


if __name__ == "__main__":
    main()
