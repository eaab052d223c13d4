"""Reference-free artefact detectors: blur, ghosting, motion, wrong intensity scaling.

Nothing is fitted: each score is a physical measurement on one scan divided by a threshold (module
constants below, chosen on the tuning cases of ``benchmarks/qc_real.py``: MNI152, brain1 MR, lung1
CT), so ``> 1`` means *flagged*. The scan is ``(X, Y, Z)`` with its voxel size in mm; *in-plane*
axes are those whose spacing is within 1.5x of the finest (all three for a near-isotropic scan);
the phase-encoding axis is unknown, so every in-plane axis is tried. The object is the Otsu
foreground of the 0.5-99.5 % range with holes filled per slice; the *background* is everything 3
voxels or more outside it, used only when it is dark (median within 15 % of the tissue level above
the 5th percentile).

- ``blur`` -- the in-plane power spectrum (Hann-windowed slices) falls too fast near Nyquist. An
  acquired scan keeps noise up to the highest frequency; a smoothed one does not. Two numbers: the
  decay between 0.30-0.35 and 0.45-0.50 cycles/voxel (decades per 0.1 cycles/voxel), and the decades
  between 0.05-0.10 and 0.45-0.50 (which keeps growing when strong blur has flattened the first at
  the numerical floor). Does *not* tell post-hoc blur from a scan reconstructed smooth (soft CT
  kernel: lung1 and lung2 reach 0.94 of the threshold) and is masked by noise added after blurring.
- ``ghosting`` -- the background repeats the object shifted by ``N/k`` (k = 2, 3, 4) along an
  in-plane axis of ``N`` voxels, as periodic k-space modulation (breathing, pulsation, EPI Nyquist
  ghosts) makes it: the largest |Pearson r| over background voxels between the high-passed scan
  (minus its in-plane 3x3 mean, so smooth shading cannot correlate) and itself rolled by ``N/k``.
  Does *not* see ghosts that fall inside the object, ghosts at other spacings, or anything in a scan
  with no dark background (a tight crop, breast1). It flags the acquired b0 (EPI, r = 0.03-0.06,
  likely its own Nyquist ghost) and the CT phantom, whose air repeats from slice to slice along an
  axis that counts as in-plane because the phantom is isotropic: false alarms in the benchmark.
- ``motion`` -- rigid motion during acquisition makes k-space inconsistent along the phase axis only,
  so ringing and replicas add fine detail along that axis and not along the readout: for each
  in-plane axis, the power at 0.125-0.25 cycles/voxel over that at 0.025-0.075 (1D spectra along the
  axis, whole scan); the score is the largest |log10| ratio of two axes' values. Does *not* see
  motion that only blurs isotropically, through-plane motion between the slices of a 2D acquisition,
  or motion along an axis where the anatomy is already finer (the sign is ignored); anatomy that is
  itself anisotropic in-plane (a tight breast crop) or a one-directional resampling reads as motion.
- ``intensity`` -- units that cannot be right. CT (``modality="CT"``, or the darkest 1 % at or below
  -900): the darkest 1 % must sit at air, ``-1000 +- 300`` HU; a missing rescale intercept (+1024),
  slope x2 or x0.5, or values scaled to [0, 1] move it. MR (no absolute unit, so never the gain):
  negative values (magnitude images are >= 0), a constant offset under a dark background, clipping
  (voxels piled at the maximum) or coarse quantisation (fewer than 100 grey levels over the
  0.5-99.5 % range). Does *not* see a wrong MR gain, 8-bit storage of 12-bit data (150-250 levels,
  steps below the noise), a CT whose air is right but whose soft tissue is not, or a missing
  intercept when the modality is not given (then the scan reads as MR).

>>> report = check_artifacts(volume, spacing=(0.8, 0.8, 6.5), modality="MR")   # doctest: +SKIP
>>> report.flags, report.reasons                                                # doctest: +SKIP
(['ghosting'], ['ghosting: background correlates with the N/k-shifted image (r=0.31) (score 10.3)'])
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

ARTIFACTS = ("blur", "ghosting", "motion", "intensity")
GHOST_DIVISORS = (2, 3, 4)
# Thresholds, chosen on the tuning cases of benchmarks/qc_real.py (MNI152 2 mm, brain1 MR, lung1 CT)
# between their largest clean value and their smallest value at the mildest severity:
BLUR_SLOPE = 1.45  # decades per 0.1 cycles/voxel near Nyquist; clean <= 1.20 (lung1), blur sigma 1 voxel >= 1.72
BLUR_RATIO = 8.0  # decades from 0.05 to 0.45 cycles/voxel; clean <= 5.8 (lung1), sigma 2.5 voxels >= 10.7
GHOST_CORR = 0.03  # high-passed background vs shifted image; clean <= 0.013, RandomGhosting 0.4 >= 0.057
MOTION_ANISO = 0.22  # |log10| high-band anisotropy; tuning clean <= 0.135, RandomMotion 2-8 deg/voxels >= 0.36
CT_AIR_HU, CT_AIR_TOL = -1000.0, 300.0  # darkest 1 %: clean -1011..-870 HU (cropped lung), x0.5 slope -505
MR_NEGATIVE = 0.02  # 0.1th percentile below -2 % of the 99.5th percentile (magnitude images are >= 0)
MR_OFFSET = 0.03  # 1st percentile above 3 % of the 99.5th with a dark background; clean <= 0.007, +10 % 0.09
MR_CLIPPED = 0.002  # fraction of voxels at the maximum; clean 0.0000, clipped at the 99th percentile 0.01
MR_LEVELS = 100.0  # grey levels across the 0.5-99.5 % range; 6-bit ~64, 8-bit of 12-bit data ~150-250


def _volume(volume) -> np.ndarray:
    a = volume.detach().cpu().float().numpy() if hasattr(volume, "detach") else np.asarray(volume, np.float32)
    if a.ndim == 4:
        a = a[0]
    if a.ndim != 3:
        raise ValueError(f"expected a (X, Y, Z) or (1, X, Y, Z) volume, got shape {a.shape}")
    return a.astype(np.float32, copy=False)


def inplane_axes(spacing: tuple[float, float, float]) -> tuple[int, ...]:
    """Axes whose spacing (mm) is within 1.5x of the finest one: the acquisition plane(s)."""
    s = np.asarray(spacing, float)
    return tuple(int(a) for a in np.flatnonzero(s <= 1.5 * s.min()))


def _plane(x: np.ndarray, spacing) -> np.ndarray:
    """``(slices, A, B)``: the scan as slices in its two finest axes."""
    a, b = np.argsort(np.asarray(spacing, float), kind="stable")[:2]
    c = 3 - a - b
    return np.transpose(x, (c, min(a, b), max(a, b)))


def foreground(x: np.ndarray, spacing) -> np.ndarray:
    """Object mask of ``(X, Y, Z)``: above the Otsu threshold of the smoothed 0.5-99.5 % range,
    holes filled in each in-plane slice (so CT lungs and MR ventricles count as object)."""
    from skimage.filters import threshold_otsu

    lo, hi = np.percentile(x, [0.5, 99.5])
    if hi <= lo:
        return np.zeros(x.shape, bool)
    smooth = ndimage.uniform_filter(np.clip(x, lo, hi), 3)
    mask = smooth > threshold_otsu(smooth)
    planes = _plane(mask, spacing)
    filled = np.stack([ndimage.binary_fill_holes(sl) for sl in planes])
    return _unplane(filled, spacing)


def _unplane(planes: np.ndarray, spacing) -> np.ndarray:
    a, b = np.argsort(np.asarray(spacing, float), kind="stable")[:2]
    order = (3 - a - b, min(a, b), max(a, b))
    return np.transpose(planes, np.argsort(order))


def blur_feature(x: np.ndarray, spacing) -> tuple[float, float]:
    """In-plane power spectrum (Hann-windowed slices): its decay near Nyquist, in decades per 0.1
    cycles/voxel between the bands 0.30-0.35 and 0.45-0.50, and the decades between the bands
    0.05-0.10 and 0.45-0.50 (which keeps growing once strong blur has flattened the first)."""
    planes = _plane(x, spacing).astype(np.float64)
    planes = planes - planes.mean(axis=(1, 2), keepdims=True)
    n1, n2 = planes.shape[1:]
    window = np.outer(np.hanning(n1), np.hanning(n2))
    power = np.zeros((n1, n2))
    for sl in planes:
        power += np.abs(np.fft.fft2(sl * window)) ** 2
    f = np.hypot(*np.meshgrid(np.fft.fftfreq(n1), np.fft.fftfreq(n2), indexing="ij"))
    band = [power[(f >= a) & (f < a + 0.05)].mean() + 1e-30 for a in (0.05, 0.30, 0.45)]
    slope = np.log10(band[1] / band[2]) / 1.5
    return float(slope), float(np.log10(band[0] / band[2]))


def ghost_feature(x: np.ndarray, spacing, bg: np.ndarray) -> float:
    """Largest |Pearson r| over background voxels between the in-plane high-passed scan and itself
    rolled by ``N/k`` along an in-plane axis (see module docstring)."""
    size = [3 if i in inplane_axes(spacing) else 1 for i in range(3)]
    hp = x - ndimage.uniform_filter(x.astype(np.float64), size)
    where = np.nonzero(bg)
    vals = hp[where]
    if vals.size < 100 or vals.std() == 0:
        return 0.0
    best = 0.0
    for ax in inplane_axes(spacing):
        n = x.shape[ax]
        for k in GHOST_DIVISORS:
            for shift in {n // k, n - n // k}:
                idx = list(where)
                idx[ax] = (idx[ax] - shift) % n
                other = hp[tuple(idx)]
                if other.std() > 0:
                    best = max(best, abs(float(np.corrcoef(vals, other)[0, 1])))
    return best


def motion_feature(x: np.ndarray, spacing) -> float:
    """Largest |log10| ratio, over pairs of in-plane axes, of the relative high-frequency power
    (0.125-0.25 over 0.025-0.075 cycles/voxel, 1D spectra along that axis) of one axis to the other's."""
    x = x.astype(np.float64)
    rel = {}
    for ax in inplane_axes(spacing):
        power = np.abs(np.fft.rfft(x - x.mean(axis=ax, keepdims=True), axis=ax)) ** 2
        power = power.mean(axis=tuple(i for i in range(3) if i != ax))
        f = np.fft.rfftfreq(x.shape[ax])
        low, high = (f >= 0.025) & (f < 0.075), (f >= 0.125) & (f < 0.25)
        rel[ax] = power[high].mean() / power[low].mean() if low.any() and high.any() and power[low].mean() > 0 else 1.0
    ratios = [abs(np.log10(rel[a] / rel[b])) for a in rel for b in rel if a < b and rel[a] > 0 and rel[b] > 0]
    return float(max(ratios, default=0.0))


def _measure(x: np.ndarray, spacing) -> dict[str, float]:
    """The raw measurements behind the scores (see the module docstring)."""
    from medgen.enhance.noise import estimate_sigma

    fg = foreground(x, spacing)
    bg = ~ndimage.binary_dilation(fg, iterations=3)
    p01, p1, p5, lo, hi = np.percentile(x, [0.1, 1, 5, 0.5, 99.5])
    tissue = x[fg]
    dark_bg = bool(bg.mean() > 0.05 and tissue.size
                   and abs(np.median(x[bg]) - p5) < 0.15 * (np.median(tissue) - p5))
    uniq = np.unique(tissue) if tissue.size else np.zeros(1)
    step = float(np.median(np.diff(uniq))) if uniq.size > 1 else float(hi - lo)
    slope, ratio = blur_feature(x, spacing)
    return {
        "blur_slope": slope, "blur_ratio": ratio, "dark_background": float(dark_bg),
        "ghost_corr": ghost_feature(x, spacing, bg) if dark_bg else 0.0,
        "motion_aniso": motion_feature(x, spacing),
        "p0.1": float(p01), "p1": float(p1), "p99.5": float(hi),
        "at_max": float(np.mean(x >= x.max() - 1e-6 * (x.max() - x.min()))),
        "levels": float((hi - lo) / step) if step > 0 else float("inf"), "sigma": float(estimate_sigma(x)),
    }


def _is_ct(x_p1: float, modality: str) -> bool:
    return modality.upper() == "CT" or (not modality and x_p1 <= -900.0)


def artifact_scores(volume, spacing: tuple[float, float, float], modality: str = "") -> dict[str, float]:
    """One score per artefact (``blur``, ``ghosting``, ``motion``, ``intensity``); ``> 1`` is flagged.

    Args:
        volume: ``(X, Y, Z)`` or ``(1, X, Y, Z)`` array or tensor, in scan units (HU for CT, any
            scale for MR).
        spacing: voxel size in mm per axis (decides the in-plane axes).
        modality: ``"CT"`` or ``"MR"``; empty: CT when the darkest 1 % reaches -900 (HU), else MR.

    Returns:
        ``{"blur", "ghosting", "motion", "intensity"}`` as floats >= 0 (see module docstring);
        ghosting and motion are 0 when the scan has no dark background to look in.
    """
    return _scores(_measure(_volume(volume), spacing), modality)[0]


def _scores(m: dict[str, float], modality: str) -> tuple[dict[str, float], dict[str, str]]:
    hi = abs(m["p99.5"]) or 1.0
    blur = {f"spectrum falls {m['blur_slope']:.2f} decades/0.1 cycles near Nyquist": m["blur_slope"] / BLUR_SLOPE,
            f"fine detail {m['blur_ratio']:.1f} decades below coarse": m["blur_ratio"] / BLUR_RATIO}
    if _is_ct(m["p1"], modality):
        intensity = {f"air at {m['p1']:.0f} (expected {CT_AIR_HU:.0f} HU)": abs(m["p1"] - CT_AIR_HU) / CT_AIR_TOL}
    else:
        intensity = {
            "negative values": max(0.0, -m["p0.1"] / hi) / MR_NEGATIVE,
            "background offset": m["p1"] / hi / MR_OFFSET if m["dark_background"] else 0.0,
            f"clipped ({100 * m['at_max']:.1f} % of voxels at the maximum)": m["at_max"] / MR_CLIPPED,
            f"quantised ({m['levels']:.0f} grey levels)": MR_LEVELS / m["levels"],
        }
    parts = {"blur": blur, "intensity": intensity,
             "ghosting": {f"background correlates with the N/k-shifted image (r={m['ghost_corr']:.2f})":
                          m["ghost_corr"] / GHOST_CORR},
             "motion": {f"fine detail differs {10 ** m['motion_aniso']:.2f}x between in-plane axes":
                        m["motion_aniso"] / MOTION_ANISO}}
    scores, reasons = {}, {}
    for name in ARTIFACTS:
        reason, value = max(parts[name].items(), key=lambda kv: kv[1])
        scores[name], reasons[name] = float(max(value, 0.0)), reason
    return scores, reasons


@dataclass
class ArtifactReport:
    """Scores (``> 1`` flagged), the flagged artefacts and one reason line per flag."""

    scores: dict[str, float]
    flags: list[str] = field(default_factory=list)
    reasons: list[str] = field(default_factory=list)
    measures: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict:
        """JSON-ready: scores, flags, reasons and the raw measurements."""
        return {"scores": self.scores, "flags": self.flags, "reasons": self.reasons, "measures": self.measures}


def check_artifacts(volume, spacing: tuple[float, float, float], modality: str = "") -> ArtifactReport:
    """:func:`artifact_scores` plus the flags (score > 1) and one reason line per flag."""
    m = _measure(_volume(volume), spacing)
    scores, why = _scores(m, modality)
    flags = [a for a in ARTIFACTS if scores[a] > 1.0]
    return ArtifactReport(scores, flags, [f"{a}: {why[a]} (score {scores[a]:.2f})" for a in flags], m)


def check_scan(scan, modality: str = "") -> ArtifactReport:
    """:func:`check_artifacts` on a loaded scan ``(1, X, Y, Z)`` MetaTensor: spacing and modality from
    its metadata (``modality`` overrides)."""
    from medgen.io.meta import spacing_from_affine

    meta = getattr(scan, "meta", {}) or {}
    spacing = meta.get("spacing")
    if spacing is None:
        spacing = spacing_from_affine(np.asarray(meta["affine"])) if "affine" in meta else (1.0, 1.0, 1.0)
    return check_artifacts(scan, tuple(float(s) for s in spacing), modality or str(meta.get("modality", "") or ""))


