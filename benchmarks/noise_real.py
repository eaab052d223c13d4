"""Noise-level estimation on acquired scans (issue #25): medgen's blind estimate against dipy's PIESNO
on ``test_piesno``, and against known noise added to each real scan.

1. ``piesno`` (dipy's 8-coil diffusion volume with a pure-noise background): medgen's
   :func:`~medgen.enhance.noise.estimate_sigma` (the sigma the default denoiser uses) against
   ``dipy.denoise.noise_estimate.piesno`` with the arguments of dipy's own test (``N=8``, expected
   0.010749) and dipy's local ``estimate_sigma`` (``N=8``).
2. Every acquired scan (``benchmarks/real_scans.py``) plus the MNI152 1 mm template and the CT phantom:
   Rician noise of 5 % and 9 % of the scan's maximum (MR) or Gaussian 20 and 40 HU (CT) is added.
   An acquired scan already carries its own noise, so the truth is ``sqrt(added² + intrinsic²)`` with
   the intrinsic level estimated on the scan as acquired; the error against the added level alone is
   shown too, and dipy's PIESNO (``N=1``) on the MR scans as the baseline (it needs a pure-noise
   background; the pyradiomics scans have none). ``mni152-masked`` is the template with noise added
   and then its background zeroed (a skull-stripped, zero-filled scan). Each level is drawn
   ``--draws`` times (seeds 0..N-1); the table shows the mean error and its spread.

Run (about four minutes on one thread)::

    OMP_NUM_THREADS=1 python benchmarks/noise_real.py            # table + benchmarks/results/noise_real.json
    OMP_NUM_THREADS=1 python benchmarks/noise_real.py --old      # the estimator before issue #25, beside it
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from real_scans import load_case  # noqa: E402
from results_json import write_results  # noqa: E402

from medgen.data import ct_phantom, mni152  # noqa: E402
from medgen.enhance.noise import _MAD_TO_STD, add_gaussian, add_rician, estimate_sigma, haar_diagonal  # noqa: E402

MR_LEVELS = (0.05, 0.09)  # fraction of the scan's maximum
CT_LEVELS = (20.0, 40.0)  # HU
REAL = ("brain1", "brain2", "breast1", "lung1", "lung2", "b0")


def estimate_before(x: np.ndarray) -> float:
    """The estimator as it was before issue #25 (a fixed ``4 * sigma`` floor cut), for before/after."""
    x = np.asarray(x, dtype=np.float64)
    detail = haar_diagonal(x)
    even = tuple(slice(0, s - s % 2) for s in x.shape)
    blocks = x[even].reshape(detail.shape[0], 2, detail.shape[1], 2, detail.shape[2], 2)
    mean = blocks.mean(axis=(1, 3, 5))
    keep = (blocks.max(axis=(1, 3, 5)) - blocks.min(axis=(1, 3, 5))) > 0
    sigma = float(np.median(np.abs(detail[keep])) * _MAD_TO_STD)
    if sigma > 0 and np.percentile(mean[keep], 0.5) > -4.0 * sigma:
        bright = keep & (mean > 4.0 * sigma)
        if bright.sum() > 64:
            sigma = float(np.median(np.abs(detail[bright])) * _MAD_TO_STD)
    return sigma


def piesno_case() -> dict:
    from dipy.denoise.noise_estimate import estimate_sigma as dipy_local_sigma
    from dipy.denoise.noise_estimate import piesno

    x = load_case("piesno").image
    ref, mask = piesno(x, N=8, alpha=0.01, step=1, eps=1e-10, return_mask=True)
    return {"piesno_N8": float(ref), "piesno_background_fraction": float(mask.mean()),
            "dipy_estimate_sigma_N8": float(dipy_local_sigma(x[..., None], N=8)[0]),
            "medgen": estimate_sigma(x), "medgen_before": estimate_before(x)}


def scans() -> dict[str, tuple[np.ndarray, str]]:
    out = {}
    for name in REAL:
        case = load_case(name)
        out[name] = np.ascontiguousarray(case.image, dtype=np.float32), case.modality
    out["mni152"] = mni152(1)["image"][0].numpy(), "MR"
    phantom = ct_phantom(seed=2024, shape=(96, 96, 96), spacing=(4.0, 4.0, 3.0), noise=0)  # benchmarks/enhance.py's
    out["ct_phantom"] = phantom["image"][0].numpy(), "CT"
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--old", action="store_true", help="also the estimator before issue #25")
    parser.add_argument("--draws", type=int, default=5, help="noise draws per case and level (seeds 0..N-1)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    from dipy.denoise.noise_estimate import piesno

    p = piesno_case()
    print("## test_piesno (dipy, 8 coils)\n")
    print("| estimator | sigma | vs PIESNO |\n|---|---|---|")
    rows = [("dipy PIESNO (N=8, dipy's test)", p["piesno_N8"]),
            ("dipy estimate_sigma (N=8, local)", p["dipy_estimate_sigma_N8"]),
            ("medgen estimate_sigma", p["medgen"]), ("medgen estimate_sigma before #25", p["medgen_before"])]
    for label, v in rows:
        print(f"| {label} | {v:.5f} | {100 * (v / p['piesno_N8'] - 1):+.1f} % |")
    estimators = {"medgen": estimate_sigma, **({"before": estimate_before} if args.old else {})}
    records = []
    data = scans()
    for name, (clean, modality) in [*data.items(), ("mni152-masked", data["mni152"])]:
        reference = name in ("mni152", "mni152-masked", "ct_phantom")  # noise-free: intrinsic 0
        intrinsic = {k: 0.0 if reference else f(clean) for k, f in estimators.items()}
        if modality == "MR" and not reference:
            intrinsic["piesno_N1"] = float(piesno(clean, N=1))
        for level in MR_LEVELS if modality == "MR" else CT_LEVELS:
            added = level * float(clean.max()) if modality == "MR" else level
            rec = {"case": name, "modality": modality, "shape": list(clean.shape), "draws": args.draws,
                   "level": f"{level:g} HU" if modality == "CT" else f"{100 * level:g} %", "added": added,
                   **{f"{k}_intrinsic": v for k, v in intrinsic.items()}}
            found: dict[str, list[float]] = {k: [] for k in [*estimators, *(["piesno_N1"] if modality == "MR" else [])]}
            for seed in range(args.draws):
                rng = np.random.default_rng(seed)
                noisy = add_rician(clean, added, rng) if modality == "MR" else add_gaussian(clean, added, rng)
                if name == "mni152-masked":
                    noisy = np.where(clean > 0, noisy, 0.0).astype(np.float32)
                for k, f in estimators.items():
                    found[k].append(f(noisy))
                if "piesno_N1" in found:
                    found["piesno_N1"].append(float(piesno(noisy, N=1)))
            for k, values in found.items():
                truth = float(np.hypot(added, intrinsic.get(k, 0.0)))
                errors = 100 * (np.asarray(values) / truth - 1)
                rec.update({f"{k}_estimates": values, f"{k}_truth": truth, f"{k}_error_pct": float(errors.mean()),
                            f"{k}_error_sd_pct": float(errors.std()),
                            f"{k}_error_vs_added_pct": float(100 * (np.mean(values) / added - 1))})
            records.append(rec)
    print(f"\n## Known noise added to real scans: mean error over {args.draws} draws ± sd "
          "(truth = sqrt(added² + intrinsic²), each estimator's own intrinsic)\n")
    head = "| case | modality | level | added | intrinsic | estimate | error | error vs added | PIESNO N=1: error |"
    if args.old:
        head += " before #25: intrinsic | before #25: error |"
    print(head)
    print("|" + "---|" * (head.count("|") - 1))
    for r in records:
        piesno_err = "-"
        if "piesno_N1_error_pct" in r:
            piesno_err = f"{r['piesno_N1_error_pct']:+.1f} % (intrinsic {r.get('piesno_N1_intrinsic', 0.0):.3g})"
        line = (f"| {r['case']} | {r['modality']} | {r['level']} | {r['added']:.4g} | {r['medgen_intrinsic']:.4g} | "
                f"{np.mean(r['medgen_estimates']):.4g} | "
                f"{r['medgen_error_pct']:+.1f} ± {r['medgen_error_sd_pct']:.1f} % | "
                f"{r['medgen_error_vs_added_pct']:+.1f} % | {piesno_err} |")
        if args.old:
            line += f" {r['before_intrinsic']:.4g} | {r['before_error_pct']:+.1f} ± {r['before_error_sd_pct']:.1f} % |"
        print(line)
    write_results("noise_real.json", {"piesno": p, "cases": records,
                                      "levels": {"MR": "fraction of the scan's max", "CT": "HU"}})


if __name__ == "__main__":
    main()
