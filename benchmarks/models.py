"""Benchmark of brain generators at their own grid against real held-out subjects, in one run.

Each model row (trained here from a config with ``--train``, or an existing model folder or shipped
name with ``--models``) is scored against cohort subjects it never saw, with the baselines computed
in the same process and on the same grid:

- **feature MMD and FID** to held-out real subjects (``medgen.evaluate.generation``, on the shipped
  self-supervised 3D network; lower is closer; comparable only within one table), per sampling seed;
- **MS-SSIM diversity** among samples (lower is more diverse; target: within 0.05 of the real
  held-out subjects');
- **memorisation**: each sample's NCC to its nearest training subject, against the nearest-training
  NCC of held-out real subjects (what distinct people reach): the distribution and how many samples
  exceed the real maximum (``medgen.evaluate.privacy``);
- **tissue volumes by an independent segmenter**: a MONAI UNet trained on real cohort subjects
  (not medgen's feature network) segments samples and held-out subjects; the Kolmogorov-Smirnov
  statistic of CSF/GM/WM volumes (mL) between samples and held-out set A, next to the same
  statistic between two disjoint real sets A and B of the same size (the target: no larger);
- **label fidelity** (label-conditioned models): Dice between the conditioning label map (held-out
  subjects' labels) and the UNet's segmentation of the generated image;
- sampling seconds per volume on this machine.

Baselines: the training subjects themselves (a perfect memoriser), the average training image
repeated (what ``mean_image`` models start from), and held-out set B (real vs real). Results go to
``benchmarks/results/models.json`` (command, commit, date, every figure and per-seed values) and a
Markdown table is printed.

    python benchmarks/models.py --models brain-vae brain-ldm --num 16 --seeds 0 1 2 \\
        --json benchmarks/results/models_3mm.json --montage docs/figures/models_3mm.png
    python benchmarks/models.py --train configs/brain3mm_gan.yaml --steps 50 --num 4 --seeds 0   # smoke run
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from results_json import write_results

from medgen.evaluate.distributions import tissue_volumes
from medgen.evaluate.downstream import train_segmenter
from medgen.evaluate.generation import feature_name, fid, mmd, ms_ssim_diversity
from medgen.evaluate.privacy import memorisation_audit
from medgen.io.atomic import atomic_path
from medgen.models import load_model
from medgen.models.hub import model_folder, shipped_models
from medgen.synthesize import synthesize
from medgen.synthesize.generate import render_labels
from medgen.training import parse_config, train
from medgen.training.config import RunConfig, config_dict, load_config
from medgen.training.data import prepare_data
from medgen.viz import save_montage

ROOT = Path(__file__).resolve().parents[1]
TISSUES = {1: "CSF", 2: "GM", 3: "WM"}


def heldout(cfg: RunConfig, normalization, num: int, seed_offset: int = 7919) -> list[dict]:
    """``3 * num`` real subjects the model never saw (another cohort seed), on the model's grid and
    in model range, with one-hot label maps: ``[{"image": (C, *size), "label": (4, *size)}]``.
    Sets A and B are compared with samples; set C's label maps condition label-conditioned models."""
    held = copy.deepcopy(cfg)
    held.data.seed = cfg.data.seed + seed_offset
    held.data.n_subjects, held.data.val_subjects = 3 * num + 1, 3 * num
    held.data.condition, held.data.label_classes = "labels", 4
    return prepare_data(held, normalization).val


def segmenter(cfg: RunConfig, normalization, steps: int) -> torch.nn.Module:
    """A MONAI UNet trained on real cohort subjects (labels 0-3) on the model's grid (seed offset 104729)."""
    seg = copy.deepcopy(cfg)
    seg.data.seed = cfg.data.seed + 104729
    seg.data.n_subjects, seg.data.val_subjects = 9, 1
    seg.data.condition, seg.data.label_classes = "labels", 4
    data = prepare_data(seg, normalization)
    items = [{"image": it["image"][:1], "label": it["label"].argmax(0, keepdim=True)} for it in data.train]
    return train_segmenter(items, steps=steps, seed=0, roi=(48, 48, 48))


@torch.no_grad()
def segment(net: torch.nn.Module, volumes: torch.Tensor) -> torch.Tensor:
    """Integer labels ``(N, 1, *size)`` of model-range volumes ``(N, C, *size)`` (each z-scored)."""
    from monai.inferers import sliding_window_inference

    out = []
    for v in volumes[:, :1]:
        z = (v - v.mean()) / v.std().clamp_min(1e-6)
        logits = sliding_window_inference(z[None], [48, 48, 48], 4, net, overlap=0.25)
        out.append(logits.argmax(1, keepdim=True)[0])
    return torch.stack(out)


def volume_ks(a: list[dict[int, float]], b: list[dict[int, float]]) -> dict[str, float]:
    """Kolmogorov-Smirnov statistic of each tissue's volume between two sets (0 same, 1 disjoint)."""
    from scipy import stats

    return {name: float(stats.ks_2samp([v.get(k, 0.0) for v in a], [v.get(k, 0.0) for v in b]).statistic)
            for k, name in TISSUES.items()}


def dice(labels: torch.Tensor, pred: torch.Tensor) -> float:
    """Mean Dice over CSF/GM/WM of integer maps ``(1, *size)``."""
    scores = []
    for k in TISSUES:
        a, b = labels == k, pred == k
        denom = int(a.sum() + b.sum())
        if denom:
            scores.append(2.0 * int((a & b).sum()) / denom)
    return float(np.mean(scores))


def score(name: str, fake_by_seed: dict[int, torch.Tensor], ctx: dict) -> dict:
    """Every figure of one row; ``fake_by_seed``: seed → ``(N, C, *size)`` model-range samples."""
    per_seed = {}
    for seed, fake in fake_by_seed.items():
        per_seed[seed] = {"mmd": mmd(ctx["real_a"], fake), "fid": fid(ctx["real_a"], fake)}
    first = next(iter(fake_by_seed.values()))
    audit = memorisation_audit(list(first), list(ctx["train"]), holdout=list(ctx["real_b"]))
    sims = np.array([r["similarity"] for r in audit["rows"]])
    real_max = max(audit["reference"])
    vols = [tissue_volumes(lab.numpy(), ctx["affine"]) for lab in segment(ctx["unet"], first)]
    row = {
        "row": name, "per_seed": per_seed,
        "mmd": float(np.mean([v["mmd"] for v in per_seed.values()])),
        "fid": float(np.mean([v["fid"] for v in per_seed.values()])),
        "ms_ssim_diversity": ms_ssim_diversity(first) if len(first) > 1 else None,
        "nearest_training_ncc": {"min": float(sims.min()), "median": float(np.median(sims)),
                                 "max": float(sims.max()), "values": sims.tolist()},
        "real_nearest_training_ncc_max": real_max,
        "samples_nearer_than_real": int((sims > real_max).sum()),
        "volume_ks_vs_real_a": volume_ks(vols, ctx["vols_a"]),
    }
    return row


def samples(model, num: int, seed: int, sampler: str | None, steps: int | None,
            conditions: list[torch.Tensor]) -> tuple[torch.Tensor, float]:
    """``num`` model-range samples ``(N, C, *size)`` drawn from ``seed * 1000`` on, and seconds per volume.
    Label-conditioned models render the one-hot maps ``conditions`` ``(K, *size)`` (held-out set C)."""
    kw = {"sampler": sampler, "steps": steps} if model.config.family in ("diffusion", "ldm") else {}
    t0 = time.perf_counter()
    if model.config.label_classes:
        device = next(model.network.parameters()).device
        with torch.no_grad():
            x = torch.cat([render_labels(model, c[None].to(device), seed * 1000 + i, **kw).float().cpu()
                           for i, c in enumerate(conditions[:num])])
    else:
        scans = synthesize(model, num, seed=seed * 1000, **kw)
        x = torch.stack([model.normalization.to_model(s.as_tensor()) for s in scans])
    return x, (time.perf_counter() - t0) / num


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs="*", default=[], help="model folders or shipped names to score")
    p.add_argument("--train", nargs="*", default=[], type=Path, help="run configs to train here first")
    p.add_argument("--config", type=Path, default=None,
                   help="without models: the run config whose grid and data the baselines are computed on")
    p.add_argument("--steps", type=int, default=None, help="override train.steps of --train configs")
    p.add_argument("--device", default="cpu")
    p.add_argument("--sampler", default=None, help="diffusion sampler (default: the model's)")
    p.add_argument("--sample-steps", type=int, default=None, help="diffusion sampling steps (default: the model's)")
    p.add_argument("--num", type=int, default=16, help="samples per seed = held-out subjects per set")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="sampling seeds")
    p.add_argument("--seg-steps", type=int, default=1500,
                   help="training steps of the realism segmenter (Dice on real set A: 0.745 at 300, 0.789 at 1500)")
    p.add_argument("--runs", type=Path, default=Path("/tmp/medgen_bench_models"))
    p.add_argument("--json", type=Path, default=ROOT / "benchmarks" / "results" / "models.json")
    p.add_argument("--cards", action="store_true",
                   help="write each shipped model's held-out figures into its card.json (metrics, metrics_source)")
    p.add_argument("--montage", type=Path, default=None,
                   help="PNG: two held-out real subjects, then two samples (first seed) of each model")
    args = p.parse_args()
    if not args.models and not args.train and not args.config:
        p.error("nothing to score: give --models and/or --train, or --config for the baselines alone")

    models = []
    for config in args.train:
        cfg = load_config(config)
        name = cfg.name
        t0 = time.perf_counter()
        result = train(cfg, args.runs / name, device=args.device, steps=args.steps, progress=False, overwrite=True)
        models.append((name, load_model(result.model_dir, device=args.device), time.perf_counter() - t0))
    for ref in args.models:
        model = load_model(ref, device=args.device)
        models.append((str(ref), model, None))

    if models:
        base = parse_config(yaml_of(models[0][1]))
        norm, spacing = models[0][1].normalization, models[0][1].reference["spacing"]
    else:  # baselines only: normalisation fitted on the config's training subjects, as training would
        base = load_config(args.config)
        fitted = prepare_data(base)
        norm, spacing = fitted.normalization, fitted.reference["spacing"]
    grid = list(base.model.size)
    for name, model, _ in models[1:]:
        if list(model.config.size) != grid:
            sys.exit(f"error: {name}: grid {model.config.size} differs from {grid}; score one grid per run")
    real = heldout(base, norm, args.num)
    real_a = torch.stack([r["image"] for r in real[: args.num]])
    real_b = torch.stack([r["image"] for r in real[args.num: 2 * args.num]])
    conditions = [r["label"] for r in real[2 * args.num:]]
    labels_c = [c.argmax(0, keepdim=True) for c in conditions]
    labels_a = [r["label"].argmax(0, keepdim=True) for r in real[: args.num]]
    train_set = torch.stack([it["image"] for it in (prepare_data(base, norm) if models else fitted).train])
    affine = np.diag([*spacing, 1.0])
    unet = segmenter(base, norm, args.seg_steps)
    vols_a = [tissue_volumes(lab.numpy(), affine) for lab in segment(unet, real_a)]
    vols_b = [tissue_volumes(lab.numpy(), affine) for lab in segment(unet, real_b)]
    ctx = {"real_a": real_a, "real_b": real_b, "train": train_set, "unet": unet, "affine": affine, "vols_a": vols_a}
    seg_dice_real = float(np.mean([dice(lab, pred) for lab, pred in zip(labels_a, segment(unet, real_a))]))

    rows, shown = [], [(f"real held-out subject {i + 1}", real_a[i]) for i in range(min(2, args.num))]
    for name, model, train_s in models:
        by_seed, per = {}, []
        for seed in args.seeds:
            by_seed[seed], sec = samples(model, args.num, seed, args.sampler, args.sample_steps, conditions)
            per.append(sec)
        row = score(name, by_seed, ctx)
        row.update(family=model.config.family, train_seconds=train_s, sampling_seconds_per_volume=float(np.mean(per)))
        if model.config.label_classes:  # the samples were rendered from set C's label maps
            pred = segment(unet, by_seed[args.seeds[0]])
            row["label_dice"] = float(np.mean([dice(lab, p) for lab, p in zip(labels_c, pred)]))
        rows.append(row)
        shown += [(f"{name} sample {i + 1}", x) for i, x in enumerate(by_seed[args.seeds[0]][:2])]
        print(f"done {name}: FID {row['fid']:.1f}, MMD {row['mmd']:.3f}", flush=True)

    mean = train_set.mean(0, keepdim=True).expand(args.num, *train_set.shape[1:])
    n = min(args.num, len(train_set))
    baselines = [
        score("baseline: training subjects", {0: train_set[:n]}, ctx),
        score("baseline: average training image", {0: mean.clone()}, ctx),
        score("baseline: real held-out set B", {0: real_b}, ctx),
    ]
    baselines[2]["volume_ks_vs_real_a"] = volume_ks(vols_b, vols_a)
    result = {
        "device": args.device, "grid": grid,
        "spacing_mm": spacing, "features": feature_name(), "num": args.num,
        "seeds": args.seeds, "segmenter_dice_on_real_a": seg_dice_real,
        "rows": rows, "baselines": baselines,
        "configs": {name: config_dict(parse_config(yaml_of(m))) for name, m, _ in models}
        or {base.name: config_dict(base)},
    }
    if args.montage is not None:
        save_montage([x for _, x in shown], args.montage, titles=[t for t, _ in shown], overwrite=True)
        where = args.montage.resolve()
        result["montage"] = where.relative_to(ROOT).as_posix() if where.is_relative_to(ROOT) else str(where)
    result = json.loads(write_results(args.json, result).read_text())
    if args.cards:
        write_cards(result, args.json)
    print(table(result))


def write_cards(result: dict, json_path: Path) -> None:
    """Each shipped model's row, next to the baselines of the same run, into its ``card.json``."""
    base = {b["row"].removeprefix("baseline: "): b for b in result["baselines"]}
    where = json_path.resolve().relative_to(ROOT).as_posix() if json_path.resolve().is_relative_to(ROOT) else json_path
    for row in result["rows"]:
        if row["row"] not in shipped_models():
            continue
        card_path = model_folder(row["row"]) / "card.json"
        card = json.loads(card_path.read_text())
        card["metrics"] = {
            "fid": round(row["fid"], 2), "feature_mmd": round(row["mmd"], 4),
            "fid_average_image": round(base["average training image"]["fid"], 2),
            "fid_training_subjects": round(base["training subjects"]["fid"], 2),
            "ms_ssim_diversity": round(row["ms_ssim_diversity"], 3),
            "ms_ssim_diversity_real": round(base["real held-out set B"]["ms_ssim_diversity"], 3),
            "samples_nearer_than_real": row["samples_nearer_than_real"],
            "sampling_seconds_per_volume": round(row["sampling_seconds_per_volume"], 2),
        }
        if "label_dice" in row:
            card["metrics"]["label_dice"] = round(row["label_dice"], 3)
            card["metrics"]["label_dice_segmenter_on_real"] = round(result["segmenter_dice_on_real_a"], 3)
        card["metrics_source"] = (f"`{result['command']}` ({where}, commit {result['commit'][:8]}): "
                                  f"{result['num']} samples per seed, seeds {result['seeds']}, against held-out "
                                  f"simulated subjects on {result['device']}")
        with atomic_path(card_path, overwrite=True) as tmp:
            tmp.write_text(json.dumps(card, indent=2) + "\n")


def yaml_of(model) -> dict:
    """The run config a model folder was trained with, as a dict."""
    import yaml

    return yaml.safe_load((model.path / "config.yaml").read_text())


def table(result: dict) -> str:
    """Markdown table of a results JSON."""
    lines = [f"grid {result['grid']} at {result['spacing_mm']} mm, {result['num']} samples per seed, seeds "
             f"{result['seeds']}, {result['device']} ({result['threads']} threads); features {result['features']}; "
             f"segmenter Dice on real set A {result['segmenter_dice_on_real_a']:.3f}", "",
             "| row | FID | feature MMD | MS-SSIM diversity | nearest-training NCC (median / max; real max) "
             "| samples nearer than real | volume KS vs real A (CSF / GM / WM) | label Dice | s/volume |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in result["rows"] + result["baselines"]:
        ncc = r["nearest_training_ncc"]
        ks = r["volume_ks_vs_real_a"]
        div = "-" if r["ms_ssim_diversity"] is None else f"{r['ms_ssim_diversity']:.3f}"
        label = f"{r['label_dice']:.3f}" if "label_dice" in r else "-"
        lines.append(
            f"| {r['row']} | {r['fid']:.1f} | {r['mmd']:.3f} | {div} | {ncc['median']:.3f} / {ncc['max']:.3f}; "
            f"{r['real_nearest_training_ncc_max']:.3f} | {r['samples_nearer_than_real']} | "
            f"{ks['CSF']:.2f} / {ks['GM']:.2f} / {ks['WM']:.2f} | {label} | "
            f"{r.get('sampling_seconds_per_volume') or 0:.2f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
