"""Quality control: is a scan typical of the real data, and what did an enhancement change where?

**Out-of-distribution flags** (:class:`FlowQC`, fitted by :func:`fit_qc`). Each scan is mapped to
[0, 1] by one fixed intensity window measured on the real scans (0.5-99.5 percentiles; so a global
intensity shift *is* visible), optionally block-averaged, and cut into non-overlapping ``p^3``
foreground patches. A :class:`~medgen.evaluate.flow.RealNVP` learns the density of real patches.
A scan gets two numbers:

- ``score``: mean negative log-likelihood of its patches (nats per voxel). It is judged two-sided,
  as a *typicality* test (Nalisnick et al. 2019): noise, ringing, an intensity shift make patches
  less likely (score too high), but over-smoothing, blur or ghost replicas can make them *more*
  likely than real patches ever are (score too low) -- both are atypical;
- ``atypical``: the fraction of its patches less likely than the 99th percentile of real patches;
  local problems (an artefact, a hallucinated structure) raise it.

Thresholds are calibrated on real scans the flow did **not** see (half of them, when there are 4
or more): the score band is ``[lower, upper] = [min - r/2, max + r/2]`` of the calibration scores
(``r`` their range; at least ±0.02 around the median), the atypical limit ``1.5 * max(calibration)``;
margins of 50 % beyond every held-out real scan. The band is not symmetric because real scans are
not: a few noisier acquisitions stretch the upper side. ``ood`` sums both up, as the larger of
the atypical fraction over its limit and the score's place in the band: ``(score - lower) /
(upper - lower)`` inside it (0 to 1: in-band scans rank by likelihood), ``1 + distance / (upper -
lower)`` outside it on either side. A scan is flagged when ``ood > 1``; ``ood`` is also the number to
rank scans by (ROC AUC). Use it on
synthetic or enhanced scans (outside the real data's range?) and on real inputs before a model is
applied (out of distribution for that model?).

**Hallucination check** (:func:`region_differences`): for an enhancement ``input → output``, per
region (tissue labels, or the 8 octants of the volume), the mean and 99th-percentile absolute
difference in scan units and in multiples of the input's noise sigma (wavelet MAD estimate), and
the mean/95th percentile of an uncertainty map (e.g. the voxel-wise std over diffusion samples) when
given. Denoising that removes only noise changes a region by about ``0.8 sigma`` on average; a
region whose mean change exceeds ``2 sigma`` or whose 99th percentile exceeds ``5 sigma`` has been
altered beyond the noise -- look at it.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from medgen.errors import DataError
from medgen.evaluate.flow import RealNVP, downsample, fit_flow, patches
from medgen.intensity import robust_range
from medgen.io.atomic import atomic_path
from medgen.io.meta import spacing_from_affine
from medgen.seeding import seeded

FOREGROUND = 0.02  # patch mean (in the [0, 1] window) above which a patch counts as tissue
OCTANTS = tuple(f"octant {'LR'[i]}{'PA'[j]}{'IS'[k]}" for i in (0, 1) for j in (0, 1) for k in (0, 1))


def _plain(scan: torch.Tensor) -> torch.Tensor:
    return (scan.as_tensor() if hasattr(scan, "as_tensor") else torch.as_tensor(scan)).detach().cpu().float()


@dataclass
class FlowQC:
    """A fitted patch flow plus its intensity window and calibrated thresholds (see module docstring).

    Attributes:
        low, high: data values mapped to 0 and 1 before patching (real 0.5/99.5 percentiles).
        patch, factor: patch side (voxels) and block-average factor applied first.
        patch_cut: patch NLL (nats/voxel) above which a patch is atypical (99th pct of real patches).
        score_centre, score_lower, score_upper: median and limits of the typical ``score`` (nats/voxel).
        atypical_threshold: flag limit of the atypical-patch fraction.
        calibration: the held-out real scans' numbers the thresholds came from.
    """

    flow: RealNVP
    low: float
    high: float
    patch: int = 4
    factor: int = 1
    patch_cut: float = float("inf")
    score_centre: float = 0.0
    score_lower: float = -float("inf")
    score_upper: float = float("inf")
    atypical_threshold: float = 1.0
    calibration: dict[str, list[float]] = field(default_factory=dict)

    def vectors(self, scan: torch.Tensor) -> torch.Tensor:
        """Foreground patch vectors ``(N, patch**3)`` of a ``(C, X, Y, Z)`` scan in the [0, 1] window."""
        v = _plain(scan)
        v = v[:1] if v.ndim == 4 else v[None]
        v = downsample((v - self.low) / (self.high - self.low), self.factor)
        return patches(v, self.patch, min_mean=FOREGROUND)

    @torch.no_grad()
    def patch_nll(self, scan: torch.Tensor) -> torch.Tensor:
        """Negative log-likelihood (nats per voxel) of each foreground patch, ``(N,)``."""
        x = self.vectors(scan)
        if len(x) == 0:
            return torch.full((1,), float("inf"))
        return torch.cat([-self.flow.log_prob(c) / self.flow.dim for c in x.split(4096)])

    def score(self, scan: torch.Tensor) -> dict[str, Any]:
        """``{"score", "atypical", "ood", "flag", "reasons"}`` for one ``(C, X, Y, Z)`` scan (module docstring)."""
        nll = self.patch_nll(scan)
        finite = nll[torch.isfinite(nll)]
        score = float(finite.mean()) if len(finite) == len(nll) else float("inf")
        atypical = float((nll > self.patch_cut).float().mean())
        width = max(self.score_upper - self.score_lower, 1e-9)
        if score > self.score_upper:
            band = 1 + (score - self.score_upper) / width
        elif score < self.score_lower:
            band = 1 + (self.score_lower - score) / width
        else:
            band = (score - self.score_lower) / width
        patchy = atypical / self.atypical_threshold
        reasons = []
        if band > 1:
            side = "less" if score > self.score_upper else "more"
            reasons.append(f"{side} likely than real scans (score {score:.2f}, real band "
                           f"{self.score_lower:.2f} to {self.score_upper:.2f} nats/voxel)")
        if patchy > 1:
            reasons.append(f"atypical regions ({100 * atypical:.1f}% of patches, "
                           f"real ≤ {100 * self.atypical_threshold:.1f}%)")
        return {"score": score, "atypical": atypical, "ood": max(band, patchy), "flag": bool(reasons),
                "reasons": reasons}

    def check(self, scans: Sequence[torch.Tensor], names: Sequence[str] | None = None) -> list[dict[str, Any]]:
        """:meth:`score` of each scan, with its ``name`` (default ``scan <i>``)."""
        names = list(names) if names is not None else [f"scan {i}" for i in range(len(scans))]
        return [{"name": n, **self.score(s)} for n, s in zip(names, scans)]

    def save(self, folder: str | Path, *, overwrite: bool = False) -> Path:
        """Write ``flow.safetensors`` + ``qc.json`` into ``folder`` (atomically)."""
        from safetensors.torch import save_file

        config = {k: getattr(self, k) for k in ("low", "high", "patch", "factor", "patch_cut", "score_centre",
                                                 "score_lower", "score_upper", "atypical_threshold", "calibration")}
        config["flow"] = {"dim": self.flow.dim, "n_couplings": len(self.flow.couplings),
                          "hidden": self.flow.couplings[0].net[0].out_features}
        with atomic_path(folder, overwrite=overwrite, is_dir=True) as tmp:
            save_file({k: v.contiguous() for k, v in self.flow.state_dict().items()}, str(tmp / "flow.safetensors"))
            (tmp / "qc.json").write_text(json.dumps(config, indent=2) + "\n")
        return Path(folder)

    @classmethod
    def load(cls, folder: str | Path) -> FlowQC:
        """Read a folder written by :meth:`save`."""
        from safetensors.torch import load_file

        folder = Path(folder)
        if not (folder / "qc.json").is_file() or not (folder / "flow.safetensors").is_file():
            raise DataError(f"{folder}: not a QC model folder (needs qc.json and flow.safetensors)")
        config = json.loads((folder / "qc.json").read_text())
        flow = RealNVP(**config.pop("flow"))
        flow.load_state_dict(load_file(str(folder / "flow.safetensors")))
        return cls(flow=flow.eval(), **config)


def fit_qc(
    real: Sequence[torch.Tensor], *, patch: int = 4, factor: int = 1, steps: int = 400, hidden: int = 128,
    n_couplings: int = 6, calibrate: Sequence[torch.Tensor] | None = None, seed: int = 0,
) -> FlowQC:
    """Fit the patch flow on real ``(C, X, Y, Z)`` scans and calibrate its thresholds.

    Args:
        real: real scans (same modality and units as what will be checked); at least 2.
        calibrate: held-out real scans for the thresholds; default: the second half of ``real``
            (the flow then learns from the first half only; with fewer than 4 scans it learns from
            all and calibrates on the same scans, which makes thresholds optimistic).
        steps: flow training steps (batch 256); 300-500 suffice for 4^3 patches.
        seed: makes the fit deterministic.
    """
    if len(real) < 2:
        raise DataError("QC needs at least 2 real scans to learn from")
    if calibrate is None:
        half = len(real) // 2 if len(real) >= 4 else 0
        fit_set, calibrate = (real[: len(real) - half], real[len(real) - half :]) if half else (real, real)
    else:
        fit_set = real
    flat = torch.cat([_plain(s).flatten()[::7] for s in fit_set])
    low, high = (float(v) for v in robust_range(flat[:2_000_000]))
    with seeded(seed):  # the flow's initial weights, without touching the caller's RNG
        qc = FlowQC(RealNVP(patch**3, n_couplings, hidden, seed=seed), low, max(high, low + 1e-6), patch, factor)
    data = torch.cat([qc.vectors(s) for s in fit_set])
    if len(data) < 64:
        raise DataError(f"only {len(data)} foreground patches in the real scans; use a smaller patch or factor")
    fit_flow(qc.flow, data, steps=steps, seed=seed)
    nlls = [qc.patch_nll(s) for s in calibrate]
    qc.patch_cut = float(torch.quantile(torch.cat(nlls), 0.99))
    scores = [float(n.mean()) for n in nlls]
    atypical = [float((n > qc.patch_cut).float().mean()) for n in nlls]
    qc.score_centre = float(np.median(scores))
    margin = 0.5 * (max(scores) - min(scores))
    qc.score_lower = min(min(scores) - margin, qc.score_centre - 0.02)
    qc.score_upper = max(max(scores) + margin, qc.score_centre + 0.02)
    qc.atypical_threshold = 1.5 * max(max(atypical), 0.01)
    qc.calibration = {"score": scores, "atypical": atypical}
    return qc


def octant_labels(shape: Sequence[int]) -> np.ndarray:
    """``(X, Y, Z)`` int map of the 8 octants, value ``1 + 4i + 2j + k`` for halves ``i, j, k`` in {0, 1}."""
    x, y, z = (np.arange(s) >= s // 2 for s in shape)
    return (1 + 4 * x[:, None, None] + 2 * y[None, :, None] + z[None, None, :]).astype(np.int32)


def region_differences(
    input: torch.Tensor, output: torch.Tensor, *, labels: torch.Tensor | None = None,
    uncertainty: torch.Tensor | None = None, names: dict[int, str] | None = None,
    noise_sigma: float | None = None, mean_factor: float = 2.0, peak_factor: float = 5.0,
) -> list[dict[str, Any]]:
    """Per-region change made by an enhancement (hallucination check; see module docstring).

    Args:
        input, output: ``(C, X, Y, Z)`` scans on one grid, in the same units (channel 0 is used).
        labels: ``(1, X, Y, Z)`` integer label map (0 = background, skipped); default: 8 octants.
        uncertainty: optional ``(1, X, Y, Z)`` uncertainty map in scan units (e.g. sample std).
        names: label value → region name (default ``{1: "csf", 2: "gm", 3: "wm"}`` style ``label k``).
        noise_sigma: noise std of the input in scan units; default: estimated from the input.
        mean_factor, peak_factor: flag when mean |diff| > ``mean_factor`` sigma or its 99th
            percentile > ``peak_factor`` sigma.

    Returns:
        One dict per region: ``region, voxels, volume_ml, mean_abs, p99_abs, mean_signed`` (scan
        units), ``mean_abs_sigma, p99_abs_sigma`` (in noise sigmas), ``uncertainty_mean,
        uncertainty_p95`` (when given), ``flag``.
    """
    a, b = _plain(input), _plain(output)
    a, b = (a[0] if a.ndim == 4 else a), (b[0] if b.ndim == 4 else b)
    if a.shape != b.shape:
        raise DataError(f"input {tuple(a.shape)} and output {tuple(b.shape)} are not on the same grid")
    diff = (b - a).numpy()
    if labels is None:
        regions = octant_labels(a.shape)
        names = dict(enumerate(OCTANTS, start=1))
    else:
        regions = _plain(labels).numpy().round().astype(np.int32).reshape(a.shape)
    if noise_sigma is None:
        from medgen.enhance.noise import estimate_sigma

        noise_sigma = estimate_sigma(a.numpy())
    sigma = max(float(noise_sigma), 1e-12)
    unc = None if uncertainty is None else _plain(uncertainty).numpy().reshape(a.shape)
    affine = getattr(input, "affine", None)
    voxel_ml = float(np.prod(spacing_from_affine(np.asarray(affine)))) / 1000.0 if affine is not None else 0.001
    rows = []
    for value in sorted(int(v) for v in np.unique(regions) if v != 0):
        inside = regions == value
        d = np.abs(diff[inside])
        row: dict[str, Any] = {
            "region": (names or {}).get(value, f"label {value}"), "voxels": int(inside.sum()),
            "volume_ml": float(inside.sum() * voxel_ml), "mean_abs": float(d.mean()),
            "p99_abs": float(np.percentile(d, 99)), "mean_signed": float(diff[inside].mean()),
            "mean_abs_sigma": float(d.mean() / sigma), "p99_abs_sigma": float(np.percentile(d, 99) / sigma),
        }
        if unc is not None:
            row["uncertainty_mean"] = float(unc[inside].mean())
            row["uncertainty_p95"] = float(np.percentile(unc[inside], 95))
        row["flag"] = bool(row["mean_abs_sigma"] > mean_factor or row["p99_abs_sigma"] > peak_factor)
        rows.append(row)
    return rows
