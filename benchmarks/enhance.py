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
import json
import os
import threading
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from unittest import mock

import numpy as np
import torch
from scipy import ndimage

from medgen.data import ct_phantom, mni152
from medgen.enhance.collaborative import collaborative_wiener
from medgen.enhance.denoise import DEFAULT_REFINE, denoise_array
from medgen.enhance.noise import add_gaussian, add_rician, rician_bias_correct
from medgen.enhance.superres import DEFAULT_STEPS, superres_array, thick_slices
from medgen.evaluate.fidelity import foreground_mask, psnr, ssim


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


def cases(names: list[str]) -> dict[str, tuple[np.ndarray, str]]:
    """``{name: (clean (X, Y, Z), noise model)}``."""
    out = {}
    t1 = mni152(1)["image"][0].numpy()
    if "mni96" in names:
        c = np.array(t1.shape) // 2
        out["mni96"] = (t1[c[0] - 48 : c[0] + 48, c[1] - 48 : c[1] + 48, c[2] - 48 : c[2] + 48], "rician")
    if "mni" in names:
        out["mni"] = (t1, "rician")
    if "ct" in names:
        out["ct"] = (ct_phantom(seed=2024, shape=(96, 96, 96), spacing=(4.0, 4.0, 3.0), noise=0)["image"][0].numpy(),
                     "gaussian")
    # cases no setting was tuned on: another phantom at finer voxels, the 2 mm template (finer anatomy per block)
    if "ct2.5" in names:
        out["ct2.5"] = (ct_phantom(seed=7, shape=(96, 96, 80), spacing=(2.5, 2.5, 2.5), noise=0)["image"][0].numpy(),
                        "gaussian")
    if "mni2" in names:
        out["mni2"] = (mni152(2)["image"][0].numpy(), "rician")
    return out


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


def bench_denoise(case: str, clean: np.ndarray, noise: str, levels: list[float], args, skip) -> list[dict]:
    rows = []
    mask = foreground_mask(clean)
    span = float(clean.max() - clean.min())
    for level in levels:
        sigma = level / 100 * (float(clean.max()) if noise == "rician" else span)
        rng = np.random.default_rng(int(level * 100))
        noisy = add_rician(clean, sigma, rng) if noise == "rician" else add_gaussian(clean, sigma, rng)
        for name, fn in denoisers(noisy, clean, sigma, noise, mask, args, skip).items():
            out, wall, mib = timed(fn)
            rows.append({"task": "denoise", "case": case, "shape": "x".join(map(str, clean.shape)),
                         "level": f"{level:g}%", "method": name, "psnr": psnr(out, clean, mask),
                         "ssim": ssim(out, clean, mask), "time_s": wall, "peak_mib": mib})
            print(_row(rows[-1]), flush=True)
    return rows


def bench_superres(case: str, clean: np.ndarray, factors: list[int], args) -> list[dict]:
    rows = []
    for factor in factors:
        n = clean.shape[2] - clean.shape[2] % factor
        ref = clean[:, :, :n]
        mask = foreground_mask(ref)
        thick = thick_slices(ref, factor, 2)
        for method in args.sr_methods:
            steps = args.sr_steps if method == "smore" else None
            run = lambda m=method, t=thick, f=factor, s=steps: superres_array(t, f, 2, method=m, steps=s)[0]  # noqa: E731
            out, wall, mib = timed(run)
            label = {"smore": f"medgen SMORE ({args.sr_steps} st)", "pretrained": "medgen pretrained",
                     "adapt": f"medgen pretrained + adapt ({DEFAULT_STEPS['adapt']} st)",
                     "gan": "medgen GAN-refined"}.get(method, method)
            rows.append({"task": "superres", "case": case, "shape": "x".join(map(str, ref.shape)),
                         "level": f"x{factor}", "method": label, "psnr": psnr(out, ref, mask),
                         "ssim": ssim(out, ref, mask), "time_s": wall, "peak_mib": mib})
            print(_row(rows[-1]), flush=True)
    return rows


HEADER = "| task | case | shape | level | method | PSNR (dB) | SSIM | time (s) | peak RSS (MiB) |"


def _row(r: dict) -> str:
    return (f"| {r['task']} | {r['case']} | {r['shape']} | {r['level']} | {r['method']} | {r['psnr']:.2f} | "
            f"{r['ssim']:.4f} | {r['time_s']:.1f} | {r['peak_mib']:.0f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", default="mni96,ct", help="mni96, mni (whole volume), ct; held out: ct2.5, mni2")
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
    parser.add_argument("--sr-cases", default="mni96,mni,ct", help="cases that also get the SR rows")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--no-denoise", action="store_true")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    skip = {s for s in args.skip.split(",") if s}
    args.models = [m for m in args.models.split(",") if m]
    args.sr_methods = [m for m in args.sr_methods.split(",") if m]
    args.sr_cases = args.sr_cases.split(",")
    levels = [float(v) for v in args.levels.split(",") if v]
    factors = [int(v) for v in args.factors.split(",") if v]
    print(HEADER)
    print("|" + "---|" * 9)
    rows: list[dict] = []
    for case, (clean, noise) in cases(args.cases.split(",")).items():
        if not args.no_denoise:
            rows += bench_denoise(case, clean, noise, levels, args, skip)
        if case in args.sr_cases:
            rows += bench_superres(case, clean, factors, args)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(rows, fh, indent=1)


if __name__ == "__main__":
    main()
