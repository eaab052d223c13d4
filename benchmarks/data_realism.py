"""How real is the simulated cohort? Tissue-volume spread, invertibility, label alignment, speed.

Baselines in the same run: the template itself (what every subject would be without simulation:
zero spread) and the spread of real adult cohorts (roughly +-10 % in GM/WM volume, i.e. a
coefficient of variation of ~5-10 %; CSF varies more, with age).

    python benchmarks/data_realism.py [--subjects 20] [--threads 2] [--out bench_out] [--no-1mm]

Prints tables and writes ``montage_brains.png`` (template + simulated subjects, 1 mm) and
``montage_ct.png`` into ``--out``.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np
import torch
from rich.console import Console
from rich.table import Table

from medgen.data import brain_cohort, ct_phantom, mni152, simulate_subject
from medgen.data.cohort import _anatomy, subject_seed, tissue_volumes_ml
from medgen.data.deform import DeformationParams, displacement, jacobian_determinant, sampling_positions
from medgen.viz import save_montage

console = Console()
ORDER = {"t1": (1, 2, 3), "t2": (3, 2, 1), "pd": (3, 2, 1)}  # labels from darkest to brightest tissue


def volume_table(n: int, resolution: int) -> Table:
    cohort = brain_cohort(n, resolution=resolution, seed=0, noise=0.0)
    volumes = np.array([list(tissue_volumes_ml(s["label"], [resolution] * 3).values()) for s in cohort])
    template = tissue_volumes_ml(mni152(resolution)["label"], [resolution] * 3)
    table = Table(title=f"Tissue volumes (ml), {n} simulated subjects at {resolution} mm vs the template")
    for col in ("tissue", "template", "mean", "std", "CV %", "min", "max", "real adults (CV)"):
        table.add_column(col, justify="right")
    real = {"csf": "~15-30 %", "gm": "~8-10 %", "wm": "~8-12 %"}
    for k, name in enumerate(("csf", "gm", "wm")):
        v = volumes[:, k]
        table.add_row(name.upper(), f"{template[name]:.0f}", f"{v.mean():.0f}", f"{v.std():.0f}",
                      f"{100 * v.std() / v.mean():.1f}", f"{v.min():.0f}", f"{v.max():.0f}", real[name])
    return table


def jacobian_table(n: int) -> Table:
    table = Table(title=f"Deformation invertibility, {n} subjects (det of the Jacobian of the sampling map)")
    for col in ("resolution", "strength", "min det J", "mean det J", "max det J", "folds (det<=0)"):
        table.add_column(col, justify="right")
    for resolution in (3, 2):
        anatomy = _anatomy(resolution)
        shape = tuple(anatomy.maps.shape[1:])
        for strength in (1.0, 2.0):
            stats = []
            for i in range(n):
                params = DeformationParams.draw(np.random.default_rng(subject_seed(0, i)), strength=strength)
                pos = sampling_positions(params, shape, float(resolution), anatomy.ventricles, anatomy.centre)
                jac = jacobian_determinant(displacement(pos, shape))
                stats.append((float(jac.min()), float(jac.mean()), float(jac.max()), int((jac <= 0).sum())))
            s = np.array(stats)
            table.add_row(f"{resolution} mm", f"{strength:g}", f"{s[:, 0].min():.3f}", f"{s[:, 1].mean():.3f}",
                          f"{s[:, 2].max():.3f}", str(int(s[:, 3].sum())))
    return table


def alignment_table(n: int) -> Table:
    table = Table(title=f"Label/image alignment: per-label image means re-derived on {n} subjects per contrast (3 mm)")
    for col in ("contrast", "background", "CSF", "GM", "WM", "expected order", "subjects in order"):
        table.add_column(col, justify="right")
    for contrast, order in ORDER.items():
        means, ok = [], 0
        for i in range(n):
            s = simulate_subject(subject_seed(0, i), 3, contrast)
            image, label = s["image"][0], s["label"][0]
            m = [float(image[label == k].mean()) for k in range(4)]
            means.append(m)
            ok += m[order[0]] < m[order[1]] < m[order[2]]
        avg = np.mean(means, axis=0)
        names = {1: "CSF", 2: "GM", 3: "WM"}
        table.add_row(contrast.upper(), *[f"{v:.3f}" for v in avg], " < ".join(names[k] for k in order), f"{ok}/{n}")
    return table


def timing_table(with_1mm: bool, threads: int) -> Table:
    table = Table(title=f"Time to simulate one subject (CPU, torch threads = {threads}; median of runs)")
    for col in ("what", "shape", "first call (template load) s", "median wall s", "median CPU s", "runs"):
        table.add_column(col, justify="right")
    for resolution in (3, 2, 1) if with_1mm else (3, 2):
        t0 = time.perf_counter()
        s = simulate_subject(0, resolution)
        first = time.perf_counter() - t0
        runs = 10 if resolution == 3 else (5 if resolution == 2 else 3)
        times = [_timed(simulate_subject, seed, resolution, "random") for seed in range(1, runs + 1)]
        table.add_row(f"brain {resolution} mm", "x".join(map(str, s["image"].shape[1:])), f"{first:.2f}",
                      f"{statistics.median(t[0] for t in times):.3f}",
                      f"{statistics.median(t[1] for t in times):.3f}", str(runs))
    times = [_timed(ct_phantom, seed) for seed in range(5)]
    shape = "x".join(map(str, ct_phantom(0)["image"].shape[1:]))
    table.add_row("CT phantom 6 mm", shape, "-", f"{statistics.median(t[0] for t in times):.3f}",
                  f"{statistics.median(t[1] for t in times):.3f}", "5")
    return table


def _timed(fn, *args) -> tuple[float, float]:
    """Wall-clock and process CPU seconds of ``fn(*args)`` (CPU time is what a busy machine hides)."""
    w0, c0 = time.perf_counter(), time.process_time()
    fn(*args)
    return time.perf_counter() - w0, time.process_time() - c0


def montages(out: Path, resolution: int) -> list[Path]:
    template = mni152(resolution)["image"]
    subjects = [simulate_subject(subject_seed(0, i), resolution, c)["image"]
                for i, c in enumerate(("t1", "t1", "t2", "pd"))]
    titles = ["MNI152 template (real)", "simulated T1 #0", "simulated T1 #1", "simulated T2 #2", "simulated PD #3"]
    brains = save_montage([template, *subjects], out / "montage_brains.png", titles=titles, overwrite=True)
    phantoms = [ct_phantom(seed, noise=None)["image"].clamp(-250, 250) for seed in range(3)]
    ct = save_montage(phantoms, out / "montage_ct.png", titles=[f"CT phantom {s} (window -250..250 HU)"
                                                                  for s in range(3)], overwrite=True)
    return [brains, ct]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--subjects", type=int, default=20)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path("bench_out"))
    parser.add_argument("--no-1mm", dest="with_1mm", action="store_false", help="Skip 1 mm timing and montage.")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    console.print(volume_table(args.subjects, 3))
    console.print(volume_table(args.subjects, 2))
    console.print(jacobian_table(args.subjects))
    console.print(alignment_table(args.subjects))
    console.print(timing_table(args.with_1mm, args.threads))
    for path in montages(args.out, 1 if args.with_1mm else 2):
        console.print(f"wrote [bold]{path}[/bold]")


if __name__ == "__main__":
    main()
