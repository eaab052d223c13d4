"""Does medgen augmentation earn its place? Low-data segmentation Dice and loader throughput, side by side.

Segmentation: a MONAI UNet is trained on 3 real-anatomy subjects of the built-in cohort (T1-like,
3 mm, CSF/GM/WM labels) with

  (a) no augmentation,
  (b) MONAI's standard spatial + intensity augmentation,
  (c) (b) + medgen augmentation: cohort diffeomorphism ``RandDeformd``, tissue contrast re-rendered
      from the label map ``RandTissueContrastd``, ``RandMRArtifactsd`` (and the same without the
      contrast step, to show what it adds),

same steps, same seeds, several seeds; Dice per class on held-out T1 subjects and on held-out
subjects with a contrast and noise the training subjects never had (T2-like, PD-like, more noise).

Throughput: cases/s a training loop receives from (1) MONAI's standard pipeline on in-memory data,
(2) a synthetic pool on disk (``SyntheticPoolDataset``) with the same pipeline, (3) the equivalent
TorchIO pipeline, (4) the standard pipeline + medgen augmentation.

Lesions (with ``--lesion-model``, a label-conditioned CT diffusion model such as the built-in
``ct-lesions``): a held-out phantom's label map rendered to HU; contrast and texture of procedural and
diffusion-inpainted lesions against the phantom's own; RetinaNet trained with an inpainted-lesion pool.

Detection: RetinaNet (:func:`medgen.evaluate.detection.tiny_retinanet`) trained on 4 CT phantoms with one
real lesion each, alone, with on-the-fly procedural lesions, with an inpainted-lesion pool, and (the
ceiling row) on 16 phantoms with 3 real lesions each; FROC sensitivity and COCO AP on 8 test phantoms.

Train on synthetic, test on real (with ``--model``, a label-conditioned SPADE GAN): the same UNet trained on
3 real subjects, on GAN image/label pairs rendered from their deformed label maps
(:func:`medgen.evaluate.downstream.synthetic_pairs`), and on both; Dice on held-out real subjects.

    python benchmarks/augment.py --steps 150 --seeds 0 1 2      # ~10 min on 2 CPU cores
    python benchmarks/augment.py --quick                         # ~2 min
    medgen train configs/brain3mm_gan_labels.yaml --out runs/spade
    python benchmarks/augment.py --only tstr --model brain-labels --steps 400
    python benchmarks/augment.py --only lesions --lesion-model ct-lesions    # label rendering, inserted lesions
    python benchmarks/augment.py --only detection --lesion-model ct-lesions  # + an inpainted-lesion pool row
    python benchmarks/augment.py --only convergence --seeds 0            # MONAI-standard Dice against steps
    python benchmarks/augment.py --only segmentation --kinds monai+preset "monai+preset + pairs" \
        --pairs-model brain-labels --steps 400   # + image/label pairs rendered by the shipped generator
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from monai.data import DataLoader, Dataset
from monai.transforms import (
    Compose,
    RandAdjustContrastd,
    RandAffined,
    RandFlipd,
    RandGaussianNoised,
    RandScaleIntensityd,
    ScaleIntensityRange,
)
from monai.utils import set_determinism
from results_json import write_results
from scipy import ndimage

from medgen.augment import (
    MixedDataset,
    RandDeformd,
    RandLesionInsertd,
    RandMRArtifactsd,
    RandTissueContrastd,
    SyntheticPoolDataset,
    segmentation_preset,
    write_pool,
)
from medgen.data import brain_cohort, ct_cohort, simulate_subject
from medgen.evaluate.detection import detection_scores, tiny_retinanet
from medgen.evaluate.downstream import (
    dice_per_class,
    segmentation_pipeline,
    synthetic_pairs,
    train_on_synthetic_test_on_real,
    train_segmenter,
)
from medgen.io.meta import like

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


def medgen_aug(contrast: bool = True) -> list:
    """medgen's cohort deformation, tissue contrast re-rendered from the label map, MR artefacts."""
    steps = [RandDeformd(KEYS, mode=["bilinear", "nearest"], prob=0.7, strength=1.0)]
    if contrast:
        steps.append(RandTissueContrastd("image", label_key="label", prob=0.7))
    return steps + [RandMRArtifactsd("image", prob=0.8)]


KINDS = ("none", "monai", "monai+medgen (no contrast)", "monai+medgen", "monai+preset", "monai+preset (light)",
         "monai+preset (no contrast)", "monai+preset (mix)")


def augmentation(kind: str) -> list:
    """The augmentation of row ``kind`` (one of ``KINDS``)."""
    # medgen before MONAI's intensity steps: artefacts, then the global intensity jitter
    return {"none": [], "monai": standard_aug(), "monai+medgen (no contrast)": medgen_aug(False) + standard_aug(),
            "monai+medgen": medgen_aug() + standard_aug(),
            "monai+preset": [segmentation_preset("image", "label")] + standard_aug(),
            "monai+preset (light)": [segmentation_preset("image", "label", strength="light")] + standard_aug(),
            "monai+preset (no contrast)": [segmentation_preset("image", "label", contrast_prob=0.0)]
            + standard_aug(),
            "monai+preset (mix)": [segmentation_preset("image", "label", contrast_prob=0.5, contrast_mix=(0.0, 1.0))]
            + standard_aug()}[kind]


def pipeline(kind: str) -> Compose:
    return segmentation_pipeline(augmentation(kind), PATCH)


def train_and_eval(kind: str, train: list, tests: dict[str, list], steps: int, seed: int) -> dict[str, np.ndarray]:
    net = train_segmenter(train, steps=steps, seed=seed, roi=PATCH, augment=augmentation(kind))
    return {name: dice_per_class(net, subjects, roi=PATCH) for name, subjects in tests.items()}


def unseen_subject(seed: int) -> dict:
    """A T1 subject with a setting neither the augmentation nor the test sets above were tuned on:
    strong bias field (0.35), thick slices (Gaussian slice profile, sigma 1.5 voxels along z), 3 % noise."""
    item = simulate_subject(seed, 3, "t1", noise=0.03, bias=0.35)
    blurred = ndimage.gaussian_filter1d(item["image"].numpy(), 1.5, axis=-1)
    item["image"] = like(item["image"], torch.as_tensor(blurred))
    return item


def with_pool(kind: str, train: list, pool: list | None) -> list:
    """Training items of row ``kind``: the real subjects, or for a ``+ pairs`` row real and synthetic
    cases 1:1 (``MixedDataset``, synthetic_fraction 0.5, every pool case once per epoch)."""
    if not kind.endswith("+ pairs"):
        return train
    train = [{"image": t["image"], "label": t["label"]} for t in train]  # the keys the pool's cases have
    if not pool:
        raise SystemExit(f"error: row '{kind}' needs --pairs-model (a label-conditioned model, e.g. brain-labels)")
    return list(MixedDataset(train, pool, synthetic_fraction=0.5, length=2 * len(pool), seed=0))


def segmentation(steps: int, seeds: list[int], kinds: tuple[str, ...] = KINDS, pairs_model: str | None = None,
                 per_label: int = 4, json_name: str = "augment_segmentation.json") -> None:
    train = brain_cohort(3, resolution=3, seed=100, contrast="t1")
    tests = {
        "held-out T1": brain_cohort(3, resolution=3, seed=200, contrast="t1"),
        "shifted T2+noise": [simulate_subject(300 + i, 3, "t2", noise=0.06) for i in range(2)],
        "shifted PD+noise": [simulate_subject(400 + i, 3, "pd", noise=0.06) for i in range(2)],
        "unseen T1 bias+thick": [unseen_subject(500 + i) for i in range(2)],
    }
    pool = None
    if pairs_model and any(k.endswith("+ pairs") for k in kinds):
        t0 = time.time()
        pool = [{"image": p["image"], "label": p["label"]}
                for p in synthetic_pairs(pairs_model, train, per_item=per_label, seed=0, strength=0.5)]
        print(f"  rendered {len(pool)} synthetic pairs with {pairs_model}: {time.time() - t0:.0f} s", flush=True)
    rows = {}
    for kind in kinds:
        runs = []
        for seed in seeds:
            t0 = time.time()
            runs.append(train_and_eval(kind.removesuffix(" + pairs"), with_pool(kind, train, pool), tests, steps, seed))
            print(f"  trained {kind:26s} seed {seed}: {time.time() - t0:.0f} s", flush=True)
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
    write_results(json_name, {
        "steps": steps, "seeds": seeds, "training": "3 simulated T1 subjects (cohort seed 100), 3 mm, 48^3 patches",
        "tests": {"held-out T1": "3 T1 subjects, cohort seed 200", "shifted T2+noise": "2 T2-like, 6 % noise",
                  "shifted PD+noise": "2 PD-like, 6 % noise",
                  "unseen T1 bias+thick": "2 T1 subjects, bias 0.35, slice blur sigma 1.5 voxels, 3 % noise"},
        "pairs": {"model": pairs_model, "per_label": per_label, "n": len(pool)} if pool else None,
        "classes": ["CSF", "GM", "WM"],
        "rows": {kind: {name: {"dice_per_seed": [r[name].tolist() for r in runs],
                               "mean_per_seed": [float(r[name].mean()) for r in runs],
                               "mean": float(np.mean([r[name].mean() for r in runs]))}
                        for name in tests} for kind, runs in rows.items()},
    })


def convergence(steps_list: list[int], seeds: list[int], kind: str = "monai") -> None:
    """Held-out Dice of row ``kind`` against training steps: has the baseline converged at ``--steps``?"""
    train = brain_cohort(3, resolution=3, seed=100, contrast="t1")
    tests = {"held-out T1": brain_cohort(3, resolution=3, seed=200, contrast="t1"),
             "shifted T2+noise": [simulate_subject(300 + i, 3, "t2", noise=0.06) for i in range(2)]}
    curve = {}
    for steps in steps_list:
        runs = [train_and_eval(kind, train, tests, steps, seed) for seed in seeds]
        curve[steps] = {name: [float(r[name].mean()) for r in runs] for name in tests}
        cells = ", ".join(f"{n} {np.mean(v) * 100:.1f}" for n, v in curve[steps].items())
        print(f"  {kind} {steps:5d} steps: {cells}", flush=True)
    write_results("augment_convergence.json", {"row": kind, "seeds": seeds, "steps": steps_list,
                                                "mean_dice_per_seed": curve})


def tstr(model: str, steps: int, seeds: list[int], n_real: int, per_label: int, strength: float = 0.5,
         json_name: str = "augment_tstr.json") -> None:
    """Train on synthetic, test on real, with the memorisation audit of the synthetic pool.

    The real subjects are cohort-0 subjects 8.. (the shipped ``brain-labels`` trained on cohort-0
    subjects 8-167: these are subjects the generator saw); their deformed label maps condition the
    pool. The test subjects come from another cohort. The audit compares each synthetic image with the
    generator's 160 training subjects (NCC) against what distinct real people reach (the test subjects).
    """
    from medgen.evaluate.privacy import memorisation_audit

    cohort = brain_cohort(168, resolution=3, seed=0, contrast="t1")  # subject i is the same for any length
    real_train = cohort[8:8 + n_real]
    real_test = brain_cohort(3, resolution=3, seed=200, contrast="t1")
    t0 = time.time()
    synthetic = synthetic_pairs(model, real_train, per_item=per_label, seed=0, strength=strength)
    print(f"  rendered {len(synthetic)} synthetic pairs: {time.time() - t0:.0f} s", flush=True)
    seen = [s["image"].as_tensor().float() for s in cohort[8:]]
    audit = memorisation_audit([s["image"].as_tensor().float() for s in synthetic], seen,
                               holdout=[s["image"].as_tensor().float() for s in real_test])
    sims = np.array([r["similarity"] for r in audit["rows"]])
    runs = []
    for seed in seeds:
        t0 = time.time()
        runs.append(train_on_synthetic_test_on_real(synthetic, real_train, real_test, steps=steps, seed=seed,
                                                    roi=PATCH)["rows"])
        print(f"  trained the TSTR rows, seed {seed}: {time.time() - t0:.0f} s", flush=True)
    rows = {}
    for i, row in enumerate(runs[0]):
        rows[row["train on"]] = {
            "n_train": row["n_train"],
            **{c: float(np.mean([r[i][c] for r in runs])) for c in ("CSF", "GM", "WM", "mean", "vs real")},
            "per_seed": {str(seed): {c: float(r[i][c]) for c in ("CSF", "GM", "WM", "mean")}
                         for seed, r in zip(seeds, runs)}}
    write_results(json_name, {
        "model": model, "steps": steps, "seeds": seeds, "per_label": per_label, "deformation_strength": strength,
        "real_train": f"{n_real} T1 subjects the generator trained on (cohort seed 0, subjects 8-{7 + n_real})",
        "real_test": "3 T1 subjects, cohort seed 200", "rows": rows,
        "audit": {"method": audit["method"], "pool": len(synthetic), "generator_training_subjects": len(seen),
                  "nearest_training_ncc": {"min": float(sims.min()), "median": float(np.median(sims)),
                                           "max": float(sims.max()), "values": sims.tolist()},
                  "real_nearest_training_ncc": [float(v) for v in audit["reference"]],
                  "samples_nearer_than_real": int((sims > max(audit["reference"])).sum())}})
    print(f"\nTSTR Dice x100 on {len(real_test)} held-out real T1 subjects (CSF / GM / WM / mean over "
          f"{len(seeds)} seeds), {steps} steps; synthetic = {model}")
    print("| train on | n | CSF | GM | WM | mean | vs real |")
    print("|---|---|---|---|---|---|---|")
    for name, r in rows.items():
        print(f"| {name} | {r['n_train']} | {r['CSF'] * 100:.1f} | {r['GM'] * 100:.1f} | {r['WM'] * 100:.1f} | "
              f"**{r['mean'] * 100:.1f}** | {r['vs real']:.2f} |")
    print(f"audit: nearest-training NCC of the pool {np.median(sims):.3f} median, {sims.max():.3f} max; distinct real "
          f"people reach {max(audit['reference']):.3f}; {int((sims > max(audit['reference'])).sum())} of "
          f"{len(sims)} nearer than that")


def _ct_items(n: int, seed: int, **kwargs) -> list[dict]:
    """CT phantoms with host masks for lesion insertion: ``organs`` (liver, spleen, kidneys) and ``lung``."""
    items = []
    for s in ct_cohort(n, seed=seed, **kwargs):
        label = s["label"].as_tensor()
        items.append({"image": s["image"], "label": s["label"], "boxes": s["boxes"], "box_labels": s["box_labels"],
                      "organs": ((label >= 4) & (label <= 6)).to(torch.uint8), "lung": (label == 3).to(torch.uint8)})
    return items


def _window(x: torch.Tensor) -> torch.Tensor:
    """``(1, X, Y, Z)`` HU → ``(2, X, Y, Z)`` in [0, 1]: a soft-tissue window (-200..250) and a lung window
    (-1000..200), so liver lesions and lung nodules both stay visible."""
    x = torch.as_tensor(x).float().as_subclass(torch.Tensor)
    return torch.cat([ScaleIntensityRange(lo, hi, 0.0, 1.0, clip=True)(x) for lo, hi in ((-200, 250), (-1000, 200))])


def lesion_insertion() -> list:
    """Procedural lesions like the phantom's: hypodense in liver/spleen/kidneys, soft-tissue nodules in the lungs."""
    boxes = {"box_keys": "boxes", "label_keys": "box_labels", "lesion_label": 8, "box_class": 0,
             "radius_mm": (5.0, 20.0)}
    return [RandLesionInsertd("image", "label", mask_key="organs", contrast=(-60.0, -25.0), prob=0.8, **boxes),
            RandLesionInsertd("image", "label", mask_key="lung", contrast=(780.0, 880.0), prob=0.5, **boxes)]


def train_detector(train: list, augment: list, steps: int, seed: int):
    set_determinism(seed=seed)
    det = tiny_retinanet(in_channels=2)
    opt = torch.optim.Adam(det.network.parameters(), 1e-3)
    data = Dataset(train, Compose(augment) if augment else None)
    rng = np.random.default_rng(seed)
    det.train()
    for _ in range(steps):
        batch = [data[int(i)] for i in rng.choice(len(data), size=2, replace=False)]
        losses = det([_window(b["image"]) for b in batch],
                     [{"boxes": torch.as_tensor(b["boxes"]).reshape(-1, 6).float(),
                       "labels": torch.as_tensor(b["box_labels"]).reshape(-1).long()} for b in batch])
        opt.zero_grad()
        (losses["classification"] + losses["box_regression"]).backward()
        opt.step()
    set_determinism(seed=None)
    return det.eval()


def _scores(det, test: list) -> dict[str, float]:
    return detection_scores(det, [_window(s["image"]) for s in test],
                            [{"boxes": s["boxes"], "labels": s["box_labels"]} for s in test])


def inpainted_pool(model: str, train: list, per_case: int, lesions: int, steps: int | None) -> list[dict]:
    """``per_case`` copies of each training phantom with ``lesions`` diffusion-inpainted lesions each (a pool)."""
    from medgen.augment import write_model_pool
    from medgen.data import load_folder

    folder = Path(tempfile.mkdtemp()) / "lesion-pool"
    t0 = time.time()
    write_model_pool(model, folder, len(train) * per_case, labels=train, lesions=lesions, host_labels=(4, 5, 6),
                     steps=steps, device="cpu")
    print(f"  lesion pool: {len(train) * per_case} cases x {lesions} inpainted lesions in {time.time() - t0:.0f} s",
          flush=True)
    return [{k: c[k] for k in ("image", "label", "boxes", "box_labels")} for c in load_folder(folder, load=True)]


def _lesion_stats(image: torch.Tensor, host_label: np.ndarray, lesion: np.ndarray) -> tuple[float, float]:
    """(contrast to the host tissue in a 2-voxel shell, HU; std inside the lesion, HU). ``host_label``:
    the label map without this lesion."""
    shell = ndimage.binary_dilation(lesion, iterations=2) & ~ndimage.binary_dilation(lesion)
    shell &= host_label == np.bincount(host_label[lesion].astype(int)).argmax()
    img = np.asarray(image)[0]
    return float(img[lesion].mean() - img[shell].mean()), float(img[lesion].std())


def lesion_realism(model: str | None, steps: int | None, n: int = 8) -> None:
    """Contrast and texture of real phantom lesions vs procedural and inpainted ones, in liver/spleen/kidneys."""
    cases = _ct_items(n, seed=30, n_lesions=(1, 2))
    rows: dict[str, list[tuple[float, float]]] = {"real phantom lesions": []}
    for c in cases:
        label = c["label"].numpy()[0]
        components, k = ndimage.label(label == 8)
        for i in range(1, k + 1):
            region = components == i
            host = label.copy()  # the lesion painted back with the organ around it
            host[region] = np.bincount(label[ndimage.binary_dilation(region) & ~region]).argmax()
            if host[region][0] in (4, 5, 6):
                rows["real phantom lesions"].append(_lesion_stats(c["image"], host, region))
    makers = {"procedural (RandLesionInsertd)": lesion_insertion()[0]}
    if model:
        makers["inpainted (RandLesionInsertd(model=...))"] = RandLesionInsertd(
            "image", "label", mask_key="organs", lesion_label=8, radius_mm=(5.0, 20.0), model=model, steps=steps,
            device="cpu")
    for name, t in makers.items():
        rows[name] = []
        t0 = time.time()
        for i, c in enumerate(cases):
            t.set_random_state(i)
            t.prob = 1.0
            out = t({"image": c["image"].clone(), "label": c["label"].clone(), "organs": c["organs"],
                     "boxes": c["boxes"].clone(), "box_labels": c["box_labels"].clone()})
            new = (out["label"].numpy()[0] == 8) & (c["label"].numpy()[0] != 8)
            if new.sum() > 0:
                rows[name].append(_lesion_stats(out["image"], c["label"].numpy()[0], new))
        print(f"  {name}: {(time.time() - t0) / len(cases):.1f} s per lesion", flush=True)
    print(f"\nInserted lesions vs the phantom's own (liver/spleen/kidneys, {n} phantoms; HU; mean ± sd over lesions)")
    print("| lesions | n | contrast to host tissue | std inside |")
    print("|---|---|---|---|")
    for name, stats in rows.items():
        a = np.asarray(stats)
        print(f"| {name} | {len(a)} | {a[:, 0].mean():.1f} ± {a[:, 0].std():.1f} | "
              f"{a[:, 1].mean():.1f} ± {a[:, 1].std():.1f} |")


PHANTOM_LABELS = ("air", "soft tissue", "fat", "lung", "liver", "spleen", "kidney", "bone", "lesion")


def label_rendering(model: str, seed: int = 99) -> None:
    """A held-out phantom's label map rendered by a label-conditioned model (RFlow-10): HU per label vs the real one."""
    from medgen.augment._generative import from_model_space, one_hot_labels
    from medgen.models import load_model
    from medgen.synthesize.generate import render_labels

    loaded = load_model(model)
    case = ct_cohort(1, seed=seed)[0]
    t0 = time.time()
    y = render_labels(loaded, one_hot_labels(case["label"], loaded.config.label_classes, loaded.config.size), 0)
    rendered = from_model_space(loaded, y, tuple(case["label"].shape[1:])).numpy()[0]
    print(f"\nPhantom label map (seed {seed}, never trained on) rendered by {model} in {time.time() - t0:.0f} s; "
          "HU mean ± sd per label")
    print("| label | voxels | real | rendered |")
    print("|---|---|---|---|")
    label, real = case["label"].numpy()[0], case["image"].numpy()[0]
    for k, name in enumerate(PHANTOM_LABELS):
        m = label == k
        if m.any():
            print(f"| {name} | {int(m.sum())} | {real[m].mean():.0f} ± {real[m].std():.0f} | "
                  f"{rendered[m].mean():.0f} ± {rendered[m].std():.0f} |")


DET_ROWS = ("real", "procedural", "inpainted", "ceiling")


def detection(steps: int, seeds: list[int], n_train: int, model: str | None = None, steps_inpaint: int | None = None,
              rows_wanted: tuple[str, ...] = DET_ROWS) -> None:
    train = _ct_items(n_train, seed=10, n_lesions=(1, 1))
    test = _ct_items(8, seed=20)
    n_lesions = sum(len(s["boxes"]) for s in test)
    rows = {}
    variants = []
    if "real" in rows_wanted:
        variants.append(("real only", train, []))
    if "procedural" in rows_wanted:
        variants.append(("real + RandLesionInsertd", train, lesion_insertion()))
    if "inpainted" in rows_wanted and model:
        pool = inpainted_pool(model, train, per_case=2, lesions=2, steps=steps_inpaint)
        variants.append(("real + inpainted-lesion pool (diffusion)", train + pool, []))
    if "ceiling" in rows_wanted:  # what more real data would give: is the detector learning at all?
        variants.append(("ceiling: 16 real phantoms x 3 lesions", _ct_items(16, seed=10, n_lesions=(3, 3)), []))
    for name, data, augment in variants:
        runs = []
        for seed in seeds:
            t0 = time.time()
            runs.append(_scores(train_detector(data, augment, steps, seed), test))
            print(f"  trained detector {name!r} seed {seed}: {time.time() - t0:.0f} s", flush=True)
        rows[name] = runs
    cols = list(next(iter(rows.values()))[0])
    print(f"\nLesion detection, RetinaNet (tiny FPN) on {n_train} CT phantoms with 1 real lesion each, {steps} steps; "
          f"test: 8 phantoms, {n_lesions} lesions; IoU >= 0.1; mean ± sd over {len(seeds)} seeds")
    print("| training data | " + " | ".join(cols) + " |")
    print("|---|" + "---|" * len(cols))
    for name, runs in rows.items():
        print(f"| {name} | " + " | ".join(f"{np.mean([r[c] for r in runs]):.2f} ± {np.std([r[c] for r in runs]):.2f}"
                                         for c in cols) + " |")


def _rate(dataset, n: int, warmup: bool = False) -> float:
    """Cases/s over ``n`` cases; ``warmup``: one untimed pass first (fills a cache, as epoch 1 of training)."""
    loader = DataLoader(dataset, batch_size=1, shuffle=False, num_workers=0)
    if warmup:
        for _ in loader:
            pass
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
        rows["synthetic pool cached (cache=True, after epoch 1) + MONAI standard"] = _rate(
            SyntheticPoolDataset(pool, transform=standard, cache=True), n, warmup=True)
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
    rows["MONAI standard + medgen (deform + contrast + MR artefacts)"] = _rate(
        Dataset(subjects, pipeline("monai+medgen")), n)
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
    parser.add_argument("--only", choices=["segmentation", "throughput", "tstr", "detection", "lesions", "convergence"])
    parser.add_argument("--curve", type=int, nargs="+", default=[100, 200, 400, 800],
                        help="step counts of --only convergence (the MONAI-standard row)")
    parser.add_argument("--kinds", nargs="+", choices=KINDS + tuple(k + " + pairs" for k in KINDS),
                        default=list(KINDS), help="segmentation rows ('... + pairs': real and --pairs-model pairs 1:1)")
    parser.add_argument("--json", default="augment_segmentation.json", help="segmentation results file name")
    parser.add_argument("--pairs-model", help="label-conditioned model (e.g. brain-labels) for the '+ pairs' rows")
    parser.add_argument("--det-steps", type=int, default=200, help="detector training steps")
    parser.add_argument("--det-train", type=int, default=4, help="training CT phantoms (1 real lesion each)")
    parser.add_argument("--model", help="label-conditioned model (e.g. brain-labels) for the train-on-synthetic, "
                        "test-on-real table")
    parser.add_argument("--lesion-model", help="label-conditioned CT diffusion model folder or 'ct-lesions' "
                        "(configs/ct_rflow_labels.yaml): label rendering, inpainted-lesion rows")
    parser.add_argument("--det-rows", nargs="+", choices=DET_ROWS, default=list(DET_ROWS),
                        help="detection rows (inpainted needs --lesion-model; ceiling: 48 real lesions)")
    parser.add_argument("--inpaint-steps", type=int, default=None, help="sampler steps for inpainted lesions")
    parser.add_argument("--real", type=int, default=3, help="real labelled subjects for the TSTR table")
    parser.add_argument("--per-label", type=int, default=4, help="synthetic pairs per real label map")
    parser.add_argument("--pair-strength", type=float, default=0.5,
                        help="TSTR: deformation strength of the label maps the pool is rendered from (1: cohort-like)")
    parser.add_argument("--tstr-json", default="augment_tstr.json", help="TSTR results file name")
    args = parser.parse_args()
    if args.only == "tstr" and not args.model:
        parser.error("--only tstr needs --model (a label-conditioned model, e.g. brain-labels)")
    torch.set_num_threads(1)
    if args.quick:
        args.steps, args.seeds, args.cases, args.det_steps = 40, [0], 6, 40
    if args.only in (None, "throughput"):
        throughput(args.cases)
    if args.only in (None, "segmentation"):
        segmentation(args.steps, args.seeds, tuple(args.kinds), args.pairs_model, args.per_label, args.json)
    if args.only == "convergence":
        convergence(args.curve, args.seeds)
    if args.only in (None, "tstr") and args.model:
        tstr(args.model, args.steps, args.seeds, args.real, args.per_label, args.pair_strength, args.tstr_json)
    if args.only in (None, "lesions"):
        if args.lesion_model:
            label_rendering(args.lesion_model)
        lesion_realism(args.lesion_model, args.inpaint_steps)
    if args.only in (None, "detection"):
        detection(args.det_steps, args.seeds, args.det_train, args.lesion_model, args.inpaint_steps,
                  tuple(args.det_rows))


if __name__ == "__main__":
    main()
