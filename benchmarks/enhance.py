"""Benchmark: medgen denoising and super-resolution against the classical baselines, side by side.

Denoising (Rician noise at 3/5/9 % of the maximum for MR, Gaussian noise at the same fractions of the
HU range for the CT phantom): PSNR and SSIM inside the foreground mask, wall time and peak RSS added
by each method, for

- medgen's default (pretrained network, noise level estimated from the scan: blind, then
  ``DEFAULT_REFINE`` collaborative Wiener passes), the network alone, ``adapt`` (pretrained + Neighbor2Neighbor on the
  scan) and ``self-supervised`` (no weights), the last two also refined;
- BM4D (``bm4d`` package, given the *true* sigma; Rician bias corrected after), scikit-image
  non-local means (true sigma, ``h = 0.8 sigma``) and a Gaussian filter (the best of three widths,
  chosen with the ground truth: an oracle, generous to the baseline).

Super-resolution ×2 and ×4 through-plane from box-averaged thick slices: PSNR/SSIM of nearest,
linear, cubic B-spline and medgen's self-supervised SMORE, pretrained slice network, pretrained +
adapted to the scan, and GAN-refined network (the CT phantom, seed 2024, is held out from training).

    pip install bm4d               # benchmark-only extra (free for non-commercial use only)
    python benchmarks/enhance.py --cases mni96,ct --levels 3,5,9
    python benchmarks/enhance.py --cases mni --levels 5 --skip bm4d,nlm   # whole volume
    python benchmarks/enhance.py --cases ct2.5,mni2 --levels 5,9 --strict   # held-out cases, previous matching

Prints a Markdown table; ``--json FILE`` also writes the rows.
"""

from __future__ import annotations

import argparse
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from unittest import mock

import numpy as np
import torch
from results_json import write_results
from scipy import ndimage

from medgen.data import ct_phantom, mni152
from medgen.enhance.collaborative import collaborative_wiener
from medgen.enhance.denoise import DEFAULT_REFINE, denoise_array
from medgen.enhance.noise import add_gaussian, add_rician, rician_bias_correct
from medgen.enhance.superres import DEFAULT_STEPS, superres_array, thick_slices
from medgen.evaluate.fidelity import foreground_mask, psnr, ssim
from medgen.intensity import is_ct


class PeakRSS:
    """Peak resident memory (MiB) above the level at entry, sampled every 5 ms from /proc."""

    def __enter__(self) -> PeakRSS:
        self.base = self.peak = self._rss()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    @staticmethod
    def _rss() -> int:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    def _poll(self) -> None:
        while not self._stop.wait(0.005):
            self.peak = max(self.peak, self._rss())

    @property
    def mib(self) -> float:
        return (self.peak - self.base) / 2**20


@dataclass
class Case:
    """A clean reference ``(X, Y, Z)``, its noise model, the noise levels to add (label, sigma in scan
    units) and the axis that super-resolution thick-samples (the finest for acquired thick-slice scans)."""

    clean: np.ndarray
    noise: str
    levels: list[tuple[str, float]]
    sr_axis: int = 2
    spacing: tuple[float, float, float] | None = None  # mm; None: isotropic enough to learn from every axis


REAL_CASES = ("brain1", "brain2", "breast1", "lung1", "lung2", "b0")
REAL_CROP = (192, 192, 48)  # in-plane and slice limits of the acquired scans (centre crop)


def _relative(clean: np.ndarray, noise: str, levels: list[float]) -> list[tuple[str, float]]:
    scale = float(clean.max()) if noise == "rician" else float(clean.max() - clean.min())
    return [(f"{v:g}%", v / 100 * scale) for v in levels]


def real_case(name: str, levels: list[float], ct_hu: list[float]) -> Case:
    """An acquired scan (``benchmarks/real_scans.py``), centre-cropped to :data:`REAL_CROP`.

    MR gets Rician noise at ``levels`` % of its 99.9th percentile (a few hot voxels would otherwise set
    the scale), CT Gaussian noise of ``ct_hu`` HU. The scan's own noise stays in the reference, so
    these are denoising gains over an already noisy scan. Super-resolution thick-samples the first
    in-plane axis (the only sharp direction of a 5-6.5 mm slice scan has ground truth).
    """
    from real_scans import load_case

    case = load_case(name)
    crop = tuple(slice(max(0, (n - c) // 2), max(0, (n - c) // 2) + c) for n, c in zip(case.image.shape, REAL_CROP))
    clean = np.ascontiguousarray(case.image[crop])
    if case.modality == "CT":
        return Case(clean, "gaussian", [(f"{v:g} HU", float(v)) for v in ct_hu], sr_axis=0, spacing=case.spacing)
    peak = float(np.percentile(clean, 99.9))
    return Case(clean, "rician", [(f"{v:g}%", v / 100 * peak) for v in levels], sr_axis=0, spacing=case.spacing)


def cases(names: list[str], levels: list[float], ct_hu: list[float]) -> dict[str, Case]:
    out = {}
    t1 = mni152(1)["image"][0].numpy()
    if "mni96" in names:
        c = np.array(t1.shape) // 2
        out["mni96"] = t1[c[0] - 48 : c[0] + 48, c[1] - 48 : c[1] + 48, c[2] - 48 : c[2] + 48], "rician"
    if "mni" in names:
        out["mni"] = t1, "rician"
    if "ct" in names:
        out["ct"] = ct_phantom(seed=2024, shape=(96, 96, 96), spacing=(4.0, 4.0, 3.0), noise=0)["image"][0].numpy(), \
            "gaussian"
    # cases no setting was tuned on: another phantom at finer voxels, the 2 mm template (finer anatomy per block)
    if "ct2.5" in names:
        out["ct2.5"] = ct_phantom(seed=7, shape=(96, 96, 80), spacing=(2.5, 2.5, 2.5), noise=0)["image"][0].numpy(), \
            "gaussian"
    if "mni2" in names:
        out["mni2"] = mni152(2)["image"][0].numpy(), "rician"
    built = {name: Case(clean, noise, _relative(clean, noise, levels)) for name, (clean, noise) in out.items()}
    # acquired scans (never tuned on): pyradiomics' and dipy's test data
    for name in names:
        if name in REAL_CASES:
            built[name] = real_case(name, levels, ct_hu)
    return built


def timed(fn: Callable[[], np.ndarray]) -> tuple[np.ndarray, float, float]:
    with PeakRSS() as mem:
        start = time.perf_counter()
        out = fn()
        wall = time.perf_counter() - start
    return out, wall, mem.mib


def denoisers(noisy: np.ndarray, clean: np.ndarray, sigma: float, noise: str, mask: np.ndarray, args,
              skip: set[str]) -> dict[str, Callable[[], np.ndarray]]:
    rician = noise == "rician"
    fix = (lambda a: rician_bias_correct(a, sigma)) if rician else (lambda a: a)
    methods: dict[str, Callable[[], np.ndarray]] = {
        "noisy input": lambda: noisy,
    }
    for model in args.models:
        label = "medgen default" if model == args.models[0] else f"medgen default ({Path(model).stem})"
        methods[label] = lambda m=model: denoise_array(noisy, method="pretrained", noise=noise, model=m,
                                                       flips=args.flips, refine=args.refine)[0]
    if args.strict and args.refine:
        def strict() -> np.ndarray:  # the default with block matching ranked strictly (the previous default)
            wiener = partial(collaborative_wiener, tolerance=0.0)
            with mock.patch("medgen.enhance.denoise.collaborative_wiener", wiener):
                return denoise_array(noisy, method="pretrained", noise=noise, model=args.models[0], flips=args.flips,
                                     refine=args.refine)[0]
        methods["medgen default, strict matching"] = strict
    if args.refine:
        methods["medgen network only"] = lambda: denoise_array(noisy, method="pretrained", noise=noise,
                                                               model=args.models[0], flips=args.flips, refine=0)[0]
    if "adapt" not in skip:
        methods[f"medgen adapt ({args.adapt_steps} st)"] = lambda: denoise_array(
            noisy, method="adapt", noise=noise, steps=args.adapt_steps, model=args.models[0], flips=args.flips,
            refine=args.refine)[0]
    if "self-supervised" not in skip:
        methods[f"medgen self-sup ({args.ss_steps} st)"] = lambda: denoise_array(
            noisy, method="self-supervised", noise=noise, steps=args.ss_steps, flips=args.flips,
            refine=args.refine)[0]
    if "gauss" not in skip:
        def best_gaussian() -> np.ndarray:
            outs = [ndimage.gaussian_filter(noisy, s) for s in (0.5, 0.8, 1.2)]
            return max(outs, key=lambda o: psnr(o, clean, mask))
        methods["Gaussian filter (oracle width)"] = best_gaussian
    if "nlm" not in skip:
        from skimage.restoration import denoise_nl_means

        methods["skimage NLM"] = lambda: fix(denoise_nl_means(
            noisy, patch_size=3, patch_distance=5, h=0.8 * sigma, sigma=sigma, fast_mode=True).astype(np.float32))
    if "bm4d" not in skip:
        import bm4d

        methods["BM4D (true sigma)"] = lambda: fix(np.asarray(bm4d.bm4d(noisy, sigma), dtype=np.float32))
    return methods


def bench_denoise(name: str, case: Case, args, skip, keep: dict) -> list[dict]:
    rows = []
    clean, noise = case.clean, case.noise
    mask = foreground_mask(clean)
    for level, sigma in case.levels:
        rng = np.random.default_rng(int(round(sigma * 1e4)) % 2**32)
        noisy = add_rician(clean, sigma, rng) if noise == "rician" else add_gaussian(clean, sigma, rng)
        for method, fn in denoisers(noisy, clean, sigma, noise, mask, args, skip).items():
            out, wall, mib = timed(fn)
            rows.append({"task": "denoise", "case": name, "shape": "x".join(map(str, clean.shape)),
                         "level": level, "sigma": sigma, "method": method, "psnr": psnr(out, clean, mask),
                         "ssim": ssim(out, clean, mask), "time_s": wall, "peak_mib": mib})
            print(_row(rows[-1]), flush=True)
            if level == case.levels[-1][0] and method in ("noisy input", "medgen default", "BM4D (true sigma)"):
                keep[f"denoise {level}: {method}"] = out
    return rows


def bench_superres(name: str, case: Case, factors: list[int], args, keep: dict) -> list[dict]:
    rows = []
    axis = case.sr_axis
    for factor in factors:
        n = case.clean.shape[axis] - case.clean.shape[axis] % factor
        ref = np.take(case.clean, np.arange(n), axis=axis)
        mask = foreground_mask(ref)
        thick = thick_slices(ref, factor, axis)
        for method in args.sr_methods:
            steps = args.sr_steps if method == "smore" else None
            run = lambda m=method, t=thick, f=factor, s=steps: superres_array(  # noqa: E731
                t, f, axis, method=m, steps=s, spacing=case.spacing)[0]
            out, wall, mib = timed(run)
            label = {"smore": f"medgen SMORE ({args.sr_steps} st)", "pretrained": "medgen pretrained",
                     "adapt": f"medgen pretrained + adapt ({DEFAULT_STEPS['adapt']} st)",
                     "gan": "medgen GAN-refined"}.get(method, method)
            rows.append({"task": "superres", "case": name, "shape": "x".join(map(str, ref.shape)),
                         "level": f"x{factor} axis {axis}", "method": label, "psnr": psnr(out, ref, mask),
                         "ssim": ssim(out, ref, mask), "time_s": wall, "peak_mib": mib})
            print(_row(rows[-1]), flush=True)
            if factor == factors[-1] and method in ("cubic", "pretrained", "adapt", "smore"):
                keep[f"superres x{factor}: {label}"] = out
                keep["superres reference"] = ref
    return rows


def montage(name: str, case: Case, keep: dict, path: Path) -> None:
    """Before / after / |difference| of the last noise level and the last SR factor, middle slice."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = []
    if "denoise" in " ".join(keep):
        level = case.levels[-1][0]
        noisy, ours = keep.get(f"denoise {level}: noisy input"), keep.get(f"denoise {level}: medgen default")
        bm4d = keep.get(f"denoise {level}: BM4D (true sigma)")
        rows.append([("clean", case.clean), (f"noisy ({level})", noisy), ("medgen default", ours),
                     ("|default - clean|", None if ours is None else np.abs(ours - case.clean)),
                     ("BM4D (true sigma)", bm4d)])
    sr = {k.split(": ", 1)[1]: v for k, v in keep.items() if k.startswith("superres x")}
    if sr:
        ref = keep["superres reference"]
        # the default: the network alone for MR, adapted to the scan for CT (superres.auto_method)
        default = next((k for k in sr if "adapt" in k), None) if is_ct(case.clean) else "medgen pretrained"
        ours = sr.get(default)
        rows.append([("reference", ref), ("cubic", sr.get("cubic")), (f"default: {default}", ours),
                     ("|default - reference|", None if ours is None else np.abs(ours - ref)),
                     next(((k, v) for k, v in sr.items() if "SMORE" in k), ("SMORE", None))])
    fig, axes = plt.subplots(len(rows), 5, figsize=(15, 3.2 * len(rows)), squeeze=False)
    for r, row in enumerate(rows):
        ref = row[0][1]
        lo, hi = np.percentile(ref, [0.5, 99.5])
        for c, (title, img) in enumerate(row):
            ax = axes[r, c]
            ax.axis("off")
            if img is None:
                continue
            sl = np.rot90(img[:, :, img.shape[2] // 2])
            if title.startswith("|"):
                ax.imshow(sl, cmap="magma", vmin=0, vmax=(hi - lo) * 0.15)
            else:
                ax.imshow(sl, cmap="gray", vmin=lo, vmax=hi)
            ax.set_title(title, fontsize=9)
    fig.suptitle(f"{name}: middle slice (difference: 0-15 % of the display range)", fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80)
    plt.close(fig)


HEADER = "| task | case | shape | level | method | PSNR (dB) | SSIM | time (s) | peak RSS (MiB) |"


def _row(r: dict) -> str:
    return (f"| {r['task']} | {r['case']} | {r['shape']} | {r['level']} | {r['method']} | {r['psnr']:.2f} | "
            f"{r['ssim']:.4f} | {r['time_s']:.1f} | {r['peak_mib']:.0f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", default="mni96,ct", help="mni96, mni (whole volume), ct; held out: ct2.5, mni2; "
                        f"acquired (run benchmarks/real_scans.py once): {', '.join(REAL_CASES)}")
    parser.add_argument("--levels", default="3,5,9", help="noise std, %% of max (MR) or of the HU range (CT)")
    parser.add_argument("--factors", default="2,4", help="through-plane SR factors ('' to skip SR)")
    parser.add_argument("--skip", default="", help="rows to leave out: bm4d, nlm, gauss, adapt, self-supervised")
    parser.add_argument("--models", default="denoiser3d", help="pretrained denoisers (shipped names, folders or "
                        ".safetensors files), comma-separated; the first is also adapted")
    parser.add_argument("--adapt-steps", type=int, default=40)
    parser.add_argument("--flips", type=int, default=1, help="medgen's flip ensemble (the CLI's default)")
    parser.add_argument("--refine", type=int, default=DEFAULT_REFINE, help="collaborative Wiener passes (the CLI's)")
    parser.add_argument("--strict", action="store_true", help="also the default with strict block matching "
                        "(Wiener tolerance 0)")
    parser.add_argument("--ss-steps", type=int, default=400, help="self-supervised steps (the CLI default)")
    parser.add_argument("--sr-steps", type=int, default=DEFAULT_STEPS["smore"], help="SMORE steps from scratch")
    parser.add_argument("--sr-methods", default="nearest,linear,cubic,smore,pretrained,adapt,gan")
    parser.add_argument("--sr-cases", default="mni96,mni,ct," + ",".join(REAL_CASES),
                        help="cases that also get the SR rows")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--no-denoise", action="store_true")
    parser.add_argument("--ct-hu", default="20,40", help="Gaussian noise std (HU) for the acquired CT scans")
    parser.add_argument("--montage", default=None, help="folder for a before/after/difference PNG per case")
    parser.add_argument("--json", default=None, help="results file (a bare name goes to benchmarks/results/)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    skip = {s for s in args.skip.split(",") if s}
    args.models = [m for m in args.models.split(",") if m]
    args.sr_methods = [m for m in args.sr_methods.split(",") if m]
    args.sr_cases = args.sr_cases.split(",")
    levels = [float(v) for v in args.levels.split(",") if v]
    ct_hu = [float(v) for v in args.ct_hu.split(",") if v]
    factors = [int(v) for v in args.factors.split(",") if v]
    print(HEADER)
    print("|" + "---|" * 9)
    rows: list[dict] = []
    for name, case in cases(args.cases.split(","), levels, ct_hu).items():
        keep: dict = {}
        if not args.no_denoise:
            rows += bench_denoise(name, case, args, skip, keep)
        if name in args.sr_cases:
            rows += bench_superres(name, case, factors, args, keep)
        if args.montage:
            montage(name, case, keep, Path(args.montage) / f"{name}.png")
    if args.json:
        write_results(args.json, {"rows": rows})


if __name__ == "__main__":
    main()
