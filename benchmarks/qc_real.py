"""Do the reference-free artefact detectors catch blur, ghosting, motion and wrong intensity scaling
on acquired scans, without false alarms on clean ones?

Scans: the acquired cases of ``benchmarks/real_scans.py`` (brain1, brain2, breast1 MR; lung1, lung2
CT in HU; b0 diffusion MR) plus the built-in MNI152 T1 template (2 mm) and CT phantom (seed 0).
Thick-slice volumes keep their central 24 slices so the run stays at a few minutes on one thread.

- **Clean** (negatives): each scan as acquired, and harmless variations of it: an in-plane crop to
  the central 70 %, flipped and axes permuted, a little extra noise (Rician for MR, Gaussian for CT:
  0.5 % of the 0.5-99.5 % range), 2x2 in-plane block averaging (a lower-resolution acquisition),
  and for MR a gain x10 (MR has no absolute scale).
- **Artefacts** (positives), each at three severities on each scan: in-plane Gaussian blur (sigma
  1, 1.5, 2.5 voxels); TorchIO ``RandomGhosting`` (2-4 ghosts along a random in-plane axis,
  intensity 0.4 / 0.7 / 1.0); TorchIO ``RandomMotion`` with k-space segments along an in-plane
  axis (2 moves, up to 2 / 4 / 8 degrees and voxels); wrong intensity scaling (CT: missing +1024
  intercept, slope x2, slope x0.5, scaled to [0, 1]; MR: clipped at the 99th / 95th percentile,
  +10 % / -10 % constant offset, 8-bit / 6-bit quantisation). The TorchIO transforms run through
  medgen's seeded :class:`~medgen.augment.RandTorchIOArtifact`.

Thresholds were chosen on the **tuning** cases (MNI152, brain1, lung1); the others are
**held out**. Per artefact: ROC AUC of its score (all clean scans vs that artefact), the detection
rate at the shipped threshold, and the false-alarm rate of every flag on the clean scans. Baseline
in the same run: **foreground-stats** (``benchmarks/evaluate.py``): the largest |z| of the
foreground mean and std against the clean scans of the same case (it is given the clean scan as a
reference, which the detectors are not).

    python benchmarks/qc_real.py            # writes benchmarks/results/qc_real.json
"""

from __future__ import annotations

import argparse
import pickle
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from scipy import ndimage

sys.path.insert(0, str(Path(__file__).resolve().parent))

from results_json import write_results  # noqa: E402

from medgen.evaluate.artifacts import ARTIFACTS, check_artifacts  # noqa: E402

TUNING = ("mni152", "brain1", "lung1")
HELD_OUT = ("brain2", "breast1", "lung2", "b0", "ct_phantom")
MAX_SLICES = 24


def load_cases() -> dict[str, tuple[np.ndarray, tuple[float, float, float], str]]:
    from real_scans import load_case

    from medgen.data import ct_phantom, mni152

    cases = {}
    mni = mni152(2)["image"]
    cases["mni152"] = (mni.as_tensor()[0].numpy(), tuple(float(s) for s in mni.meta["spacing"]), "MR")
    for name in ("brain1", "brain2", "breast1", "lung1", "lung2", "b0"):
        case = load_case(name)
        cases[name] = (case.image, case.spacing, case.modality)
    ct = ct_phantom(0)["image"]
    cases["ct_phantom"] = (ct.as_tensor()[0].numpy(), tuple(float(s) for s in ct.meta["spacing"]), "CT")
    for name, (x, sp, mod) in cases.items():
        thick = int(np.argmax(sp))
        if x.shape[thick] > MAX_SLICES and sp[thick] > 1.5 * min(sp):
            start = (x.shape[thick] - MAX_SLICES) // 2
            x = np.take(x, np.arange(start, start + MAX_SLICES), axis=thick)
        cases[name] = (np.ascontiguousarray(x, dtype=np.float32), sp, mod)
    return cases


def _inplane(sp) -> list[int]:
    s = np.asarray(sp)
    return [int(a) for a in np.flatnonzero(s <= 1.5 * s.min())]


def clean_variants(x, sp, mod, rng) -> dict[str, tuple[np.ndarray, tuple]]:
    a, b = _inplane(sp)[:2]
    out = {"as acquired": (x, sp)}
    crop = [slice(None)] * 3
    for ax in (a, b):
        n = x.shape[ax]
        crop[ax] = slice(int(0.15 * n), int(0.85 * n))
    out["crop 70%"] = (x[tuple(crop)], sp)
    perm = (2, 0, 1)
    out["flip+permute"] = (np.ascontiguousarray(np.flip(x, 0).transpose(perm)), tuple(sp[p] for p in perm))
    lo, hi = np.percentile(x, [0.5, 99.5])
    s = 0.005 * (hi - lo)
    if mod == "MR":
        noisy = np.hypot(x + rng.normal(0, s, x.shape), rng.normal(0, s, x.shape))
    else:
        noisy = x + rng.normal(0, s, x.shape)
    out["extra noise"] = (noisy.astype(np.float32), sp)
    binned = x
    for ax in (a, b):
        n = binned.shape[ax] // 2 * 2
        binned = np.take(binned, np.arange(n), axis=ax)
        binned = 0.5 * (np.take(binned, np.arange(0, n, 2), axis=ax) + np.take(binned, np.arange(1, n, 2), axis=ax))
    out["2x2 binned"] = (binned.astype(np.float32), tuple(v * 2 if i in (a, b) else v for i, v in enumerate(sp)))
    if mod == "MR":
        out["gain x10"] = (x * 10, sp)
    return out


def _torchio(x: np.ndarray, name: str, seed: int, magnitude: bool, phase_axis: int | None = None,
             **kw) -> np.ndarray:
    """TorchIO transform ``name`` via medgen's seeded wrapper; motion's k-space segments run along the
    last axis, so ``phase_axis`` is moved there and back."""
    from medgen.augment import RandTorchIOArtifact

    t = RandTorchIOArtifact(name, **kw)
    t.set_random_state(seed=seed)
    v = torch.from_numpy(np.ascontiguousarray(x))
    if phase_axis is not None:
        v = v.movedim(phase_axis, 2)
    out = torch.as_tensor(t(v[None].contiguous()))[0]
    if magnitude:  # an MR scanner writes |image|; TorchIO keeps the real part
        out = out.abs()
    if phase_axis is not None:
        out = out.movedim(2, phase_axis)
    return out.numpy().astype(np.float32)


def artefacts(x, sp, mod, rng) -> dict[str, list[tuple[str, np.ndarray]]]:
    ax = _inplane(sp)
    out: dict[str, list] = {k: [] for k in ARTIFACTS}
    for s in (1.0, 1.5, 2.5):
        sig = [s if i in ax[:2] else 0.0 for i in range(3)]
        out["blur"].append((f"sigma {s} vox", ndimage.gaussian_filter(x, sig).astype(np.float32)))
    for k, inten in enumerate((0.4, 0.7, 1.0)):
        axis = int(rng.choice(ax))
        ghosts = int(rng.integers(2, 5))
        out["ghosting"].append((f"intensity {inten}", _torchio(
            x, "RandomGhosting", seed=k, magnitude=mod == "MR", num_ghosts=(ghosts, ghosts), axes=(axis,),
            intensity=(inten, inten))))
    for k, deg in enumerate((2.0, 4.0, 8.0)):
        axis = int(rng.choice(ax))
        out["motion"].append((f"{deg:g} deg/vox", _torchio(
            x, "RandomMotion", seed=k, magnitude=mod == "MR", phase_axis=axis, degrees=deg, translation=deg,
            num_transforms=2)))
    lo, hi = np.percentile(x, [0.5, 99.5])
    if mod == "CT":
        out["intensity"] += [("no intercept +1024", x + 1024), ("slope x2", x * 2), ("slope x0.5", x * 0.5),
                             ("scaled to [0,1]", (x - x.min()) / (x.max() - x.min()))]
    else:
        out["intensity"] += [("clipped p99", np.minimum(x, np.percentile(x, 99))),
                             ("clipped p95", np.minimum(x, np.percentile(x, 95))),
                             ("offset +10%", x + 0.1 * hi), ("offset -10%", x - 0.1 * hi),
                             ("8-bit", np.round(x / x.max() * 255)), ("6-bit", np.round(x / x.max() * 63))]
    out["intensity"] = [(n, v.astype(np.float32)) for n, v in out["intensity"]]
    return out


def auc(neg: list[float], pos: list[float]) -> float:
    n, p = np.asarray(neg)[:, None], np.asarray(pos)[None, :]
    return float(np.mean((p > n) + 0.5 * (p == n)))


def fg_stats(v: np.ndarray) -> np.ndarray:
    """Foreground mean and std (``benchmarks/evaluate.py``'s foreground-stats baseline)."""
    from medgen.evaluate.distributions import foreground_values

    f = foreground_values(torch.from_numpy(np.ascontiguousarray(v))[None])
    return np.array([f.mean(), f.std()])


def collect(cache: Path | None) -> list[dict]:
    if cache and cache.is_file():
        return pickle.loads(cache.read_bytes())
    rows = []
    for case, (x, sp, mod) in load_cases().items():
        t0 = time.time()
        rng = np.random.default_rng(0)
        clean = clean_variants(x, sp, mod, rng)
        ref = np.array([fg_stats(v) for name, (v, _) in clean.items() if name != "gain x10"])
        ref = (ref.mean(0), ref.std(0) + 1e-9)
        for name, (v, s) in clean.items():
            rows.append({"case": case, "kind": "clean", "variant": name, **_score(v, s, mod, ref)})
        for art, items in artefacts(x, sp, mod, rng).items():
            for name, v in items:
                rows.append({"case": case, "kind": art, "variant": name, **_score(v, sp, mod, ref)})
        print(f"{case}: {x.shape} {sp} {mod}: {time.time() - t0:.0f} s", flush=True)
    if cache:
        cache.write_bytes(pickle.dumps(rows))
    return rows


def _score(v, sp, mod, ref) -> dict:
    report = check_artifacts(v, sp, modality=mod)
    return {"scores": report.scores, "flags": report.flags, "measures": report.measures,
            "baseline": float(np.abs((fg_stats(v) - ref[0]) / ref[1]).max())}


def summarise(rows: list[dict]) -> dict:
    """Per artefact and case group: AUC of its score and of the baseline, detection rate at the shipped
    threshold; false-alarm rate of any flag on the clean scans."""
    groups = {"tuning": TUNING, "held-out": HELD_OUT, "held-out real": tuple(c for c in HELD_OUT if c != "ct_phantom"),
              "all": TUNING + HELD_OUT}
    out = {}
    for group, cases in groups.items():
        clean = [r for r in rows if r["case"] in cases and r["kind"] == "clean"]
        entry = {"n_clean": len(clean), "false_alarm_any": float(np.mean([bool(r["flags"]) for r in clean])),
                 "false_alarm": {a: float(np.mean([a in r["flags"] for r in clean])) for a in ARTIFACTS}}
        for art in ARTIFACTS:
            pos = [r for r in rows if r["case"] in cases and r["kind"] == art]
            entry[art] = {
                "n": len(pos),
                "auc": auc([r["scores"][art] for r in clean], [r["scores"][art] for r in pos]),
                "detected": float(np.mean([art in r["flags"] for r in pos])),
                "auc_foreground_stats": auc([r["baseline"] for r in clean], [r["baseline"] for r in pos]),
                "by_severity": {v: float(np.mean([art in r["flags"] for r in pos if r["variant"] == v]))
                                for v in dict.fromkeys(r["variant"] for r in pos)},
            }
        out[group] = entry
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cache", type=Path, default=None, help="Pickle of the per-scan scores (reused if present).")
    args = parser.parse_args()
    torch.set_num_threads(1)
    warnings.simplefilter("ignore")
    rows = collect(args.cache)
    summary = summarise(rows)
    print("| cases | artefact | n | AUC | detected at threshold | foreground-stats AUC | false alarms (this flag) |")
    print("|---|---|---|---|---|---|---|")
    for group in ("tuning", "held-out", "held-out real"):
        e = summary[group]
        for art in ARTIFACTS:
            a = e[art]
            print(f"| {group} | {art} | {a['n']} | {a['auc']:.3f} | {100 * a['detected']:.0f} % | "
                  f"{a['auc_foreground_stats']:.3f} | {100 * e['false_alarm'][art]:.0f} % of {e['n_clean']} |")
        print(f"| {group} | any flag on clean scans | {e['n_clean']} | | | | {100 * e['false_alarm_any']:.0f} % |")
    print("\nFlags on clean scans:")
    for r in rows:
        if r["kind"] == "clean" and r["flags"]:
            print(f"  {r['case']} ({r['variant']}): {', '.join(r['flags'])}")
    print("\nMisses per case (artefact: missed/total):")
    for case in TUNING + HELD_OUT:
        miss = {a: [r["variant"] for r in rows if r["case"] == case and r["kind"] == a and a not in r["flags"]]
                for a in ARTIFACTS}
        print(f"  {case}: " + "; ".join(f"{a} {len(m)} ({', '.join(m)})" for a, m in miss.items() if m))
    per_scan = [{k: r[k] for k in ("case", "kind", "variant", "scores", "flags", "measures", "baseline")} for r in rows]
    write_results("qc_real.json", {"tuning_cases": list(TUNING), "held_out_cases": list(HELD_OUT),
                                   "thresholds": thresholds(), "summary": summary, "scans": per_scan})


def thresholds() -> dict[str, float]:
    from medgen.evaluate import artifacts

    return {k: v for k, v in vars(artifacts).items() if k.isupper() and isinstance(v, float)}


if __name__ == "__main__":
    main()
