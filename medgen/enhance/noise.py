"""Noise models of real scanners, and estimation of the noise level from a single scan.

Physics:

- **MRI magnitude (Rician)**: the complex signal ``A`` gets independent Gaussian noise of standard
  deviation ``sigma`` on its real and imaginary parts; the magnitude ``M = |A + n_r + i n_i|`` is
  Rician. Where ``A >> sigma`` it is close to Gaussian with std ``sigma`` and a small upward bias
  (``E[M] ~ sqrt(A^2 + sigma^2)``); in the background (``A = 0``) it is Rayleigh.
- **Gaussian**: additive, signal-independent, e.g. complex or real-valued reconstructions.
- **Poisson-Gaussian**: photon counting plus read-out noise, ``var(y) = gain * x + sigma_read^2``.
  The generalised Anscombe transform (:func:`anscombe`) makes it Gaussian with unit variance.
- **Low-dose CT**: Poisson counts on the transmitted intensity ``I0 * dose * exp(-line integral)``
  plus electronic noise, reconstructed by filtered back-projection (:func:`add_lowdose_ct`). The
  result in HU has the streaky, spatially correlated texture of a real low-dose scan.

Estimation: :func:`estimate_sigma` takes the finest 3D Haar diagonal detail (``HHH``, pure noise
for smooth anatomy) and its median absolute deviation over the foreground, the classic wavelet
estimator of Donoho & Johnstone extended to 3D; for magnitude MR with a true noise background, the
background's Rayleigh level caps it (:func:`rayleigh_background_sigma`: anatomy finer than the
voxels inflates ``HHH``). Where a scan cannot tell its noise level (NaN voxels,
a constant or tiny image) it raises :class:`~medgen.errors.ScanValueError` rather than guess.

All functions take and return ``numpy`` arrays ``(X, Y, Z)`` (or any leading shape) in the scan's
units; randomness comes from an explicit ``numpy.random.Generator``.

Example:
    >>> rng = np.random.default_rng(0)
    >>> noisy = add_rician(clean, 0.05 * clean.max(), rng)      # doctest: +SKIP
    >>> estimate_sigma(noisy) / (0.05 * clean.max())             # doctest: +SKIP
    1.0...
"""

from __future__ import annotations

import warnings

import numpy as np

from medgen.errors import MedgenWarning, ScanValueError

NOISE_MODELS = ("rician", "gaussian", "poisson")
_MAD_TO_STD = 1.0 / 0.6744897501960817
MIN_BLOCKS = 64  # varying 2x2x2 blocks: the MAD of 64 samples is within ~15 % (1 sd) of the std
# blocks whose one-axis details all lie within 2 sigma count as flat (87 % of pure-noise blocks). Mean
# error over 5 noise draws, Rician 3 / 5 / 9 % of the max: dipy's 4x4x5 mm b0 +51 / +30 / +13 % ->
# +27 / +24 / +15 %, pyradiomics brain2 +11.5 / +3.8 / +0.7 % -> +3.7 / +1.2 / +0.9 %; 2 mm MNI152 at
# 3 %: +17 % -> +3 %. The default denoiser likes a slight overestimate: on the 96³ MNI152 crop at 3 %
# its PSNR drops 0.05 dB (39.66 -> 39.61), at 5 and 9 % < 0.01 dB.
EDGE_CUT = 2.0


def add_gaussian(x: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    """``x + N(0, sigma^2)``, float32, same units as ``x``."""
    return (x + rng.normal(0.0, sigma, x.shape)).astype(np.float32)


def add_rician(x: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    """Rician magnitude ``|x + n_r + i n_i|`` with ``n ~ N(0, sigma^2)``; ``x >= 0`` expected."""
    real = x + rng.normal(0.0, sigma, x.shape)
    imag = rng.normal(0.0, sigma, x.shape)
    return np.hypot(real, imag).astype(np.float32)


def add_poisson_gaussian(
    x: np.ndarray, gain: float, sigma_read: float, rng: np.random.Generator
) -> np.ndarray:
    """``gain * Poisson(x / gain) + N(0, sigma_read^2)``: ``var = gain * x + sigma_read^2``, ``x >= 0``."""
    counts = rng.poisson(np.clip(x, 0, None) / gain)
    return (gain * counts + rng.normal(0.0, sigma_read, x.shape)).astype(np.float32)


def add_lowdose_ct(
    hu: np.ndarray,
    dose: float,
    rng: np.random.Generator,
    *,
    photons: float = 1.0e5,
    electronic_sigma: float = 10.0,
    spacing_mm: float = 1.0,
    axis: int = 2,
) -> np.ndarray:
    """Simulate a CT acquired at ``dose`` (fraction of a full-dose scan with ``photons`` per ray).

    Each slice orthogonal to ``axis`` is forward-projected (parallel beam, ``skimage`` Radon), the
    counts ``I0 * dose * exp(-mu)`` get Poisson and electronic Gaussian noise, and the sinogram is
    reconstructed with filtered back-projection (ramp filter). Only the *noise* of that round trip
    is added to ``hu``, so the anatomy stays exactly the input's.

    Args:
        hu: ``(X, Y, Z)`` in Hounsfield units.
        dose: in ``(0, 1]``; ``0.25`` is a quarter-dose scan.
        spacing_mm: in-plane voxel size (mm), for the attenuation line integrals.

    Returns:
        ``(X, Y, Z)`` float32 in HU.
    """
    from skimage.transform import iradon, radon

    mu_water = 0.0192  # 1/mm at ~70 keV
    vol = np.moveaxis(np.asarray(hu, dtype=np.float64), axis, 0)
    out = np.empty_like(vol)
    n = max(vol.shape[1:])
    theta = np.linspace(0.0, 180.0, max(n, 90), endpoint=False)
    i0 = photons * dose
    for k, sl in enumerate(vol):
        pad = np.full((n, n), -1000.0)
        pad[: sl.shape[0], : sl.shape[1]] = sl
        mu = np.clip(mu_water * (1.0 + pad / 1000.0), 0, None) * spacing_mm
        sino = radon(mu, theta, circle=False)
        counts = rng.poisson(i0 * np.exp(-sino)) + rng.normal(0.0, electronic_sigma, sino.shape)
        noisy_sino = -np.log(np.clip(counts, 1.0, None) / i0)
        noise_mu = iradon(noisy_sino - sino, theta, output_size=n, circle=False, filter_name="ramp")
        out[k] = sl + (noise_mu[: sl.shape[0], : sl.shape[1]] / spacing_mm) / mu_water * 1000.0
    return np.moveaxis(out, 0, axis).astype(np.float32)


def haar_diagonal(x: np.ndarray) -> np.ndarray:
    """Finest 3D Haar ``HHH`` detail of ``(X, Y, Z)``: std ``sigma`` for white noise of std ``sigma``."""
    x = np.asarray(x, dtype=np.float64)
    d = x
    for ax in range(3):
        n = d.shape[ax] - d.shape[ax] % 2
        a = np.take(d, np.arange(0, n, 2), axis=ax)
        b = np.take(d, np.arange(1, n, 2), axis=ax)
        d = (a - b) / np.sqrt(2.0)
    return d


def estimate_sigma(x: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Noise standard deviation of a ``(X, Y, Z)`` scan, in its units (robust MAD estimator).

    Without ``mask``, the foreground is found from the data: 2x2x2 blocks which are not exactly
    constant (zero-filled padding) and, for non-negative data (MR magnitude), whose mean stands above
    the noise floor, whose spread is not the tissue's noise (Rayleigh in the background of a
    one-channel scan: 0.66 sigma; chi with 2N degrees of freedom for an N-coil sum of squares: 0.8
    sigma for N = 8). The floor sits at ``sigma * sqrt(2N)`` (1.25 sigma for one channel, 3.9 sigma
    for eight), so the cut is the higher of ``4 * sigma`` of a first estimate and twice the 10th
    percentile of the block means (the floor where there is background; without any, the cut falls
    back to ``4 * sigma``). On dipy's ``test_piesno`` (8 coils) the fixed ``4 * sigma`` cut kept the
    floor and gave 25 % below PIESNO; with both it is 6 % above (``benchmarks/noise_real.py``).
    Blocks on edges (one-axis Haar details above ``EDGE_CUT * sigma``) are left out too, so that
    anatomy in the ``HHH`` detail of coarse or thick-slice scans does not count as noise.
    Works for Gaussian noise, Rician noise at SNR > ~3 and locally for Poisson-Gaussian noise (an
    average). Returns 0.0 for a noiseless piecewise-constant image.

    Raises:
        ScanValueError: NaN or Inf voxels, or fewer than :data:`MIN_BLOCKS` varying blocks (a
            constant, zero-filled or tiny scan): the level cannot be estimated; give it instead.

    Warns:
        MedgenWarning: fewer than :data:`MIN_BLOCKS` blocks stand above the noise floor, so the
            estimate comes from the background and is biased low for magnitude data.
    """
    x = np.asarray(x, dtype=np.float64)
    if x.ndim == 4:
        x = x[0]
    bad = int(np.size(x) - np.count_nonzero(np.isfinite(x)))
    if bad:
        raise ScanValueError(f"noise level cannot be estimated: {bad} voxels are NaN or Inf; give sigma (--sigma)")
    detail = haar_diagonal(x)
    even = tuple(slice(0, s - s % 2) for s in x.shape)
    blocks = x[even].reshape(detail.shape[0], 2, detail.shape[1], 2, detail.shape[2], 2)
    mean = blocks.mean(axis=(1, 3, 5))
    spread = blocks.max(axis=(1, 3, 5)) - blocks.min(axis=(1, 3, 5))
    keep = spread > 0
    if mask is not None:
        keep &= np.asarray(mask, bool)[even][::2, ::2, ::2]
    if keep.sum() < MIN_BLOCKS:
        raise ScanValueError(
            f"noise level cannot be estimated: only {int(keep.sum())} of {keep.size} 2x2x2 blocks vary "
            f"(at least {MIN_BLOCKS} needed: the scan is constant, zero-filled or too small); give sigma (--sigma)")
    sigma = _mad_sigma(detail[keep])
    if mask is None and sigma > 0 and np.percentile(mean[keep], 0.5) > -4.0 * sigma:
        # non-negative data (MR magnitude): leave out the noise floor, keep tissue.
        # Signed data (CT in HU) has no such bias and keeps every voxel.
        bright = keep & (mean > max(4.0 * sigma, 2.0 * np.percentile(mean[keep], 10)))
        if bright.sum() < max(MIN_BLOCKS, 0.05 * keep.sum()):  # no background: the 10th percentile is tissue
            bright = keep & (mean > 4.0 * sigma)
        if bright.sum() >= MIN_BLOCKS:
            keep = bright
            sigma = _mad_sigma(detail[bright])
        else:
            warnings.warn(MedgenWarning(
                f"noise level estimated from the background: only {int(bright.sum())} 2x2x2 blocks stand "
                f"4 sigma above it (at least {MIN_BLOCKS} needed), so a magnitude (Rician) scan's level "
                f"is underestimated; give sigma (--sigma) if it is known"), stacklevel=2)
    # leave out blocks on edges, whose HHH holds anatomy as well as noise (coarse or thick-slice scans).
    # The one-axis details (HLL, LHL, LLH) find them and, being orthogonal to HHH, are independent of it
    # for white noise: selecting on them does not bias the estimate.
    edges = _edge_details(blocks)
    for _ in range(2):
        flat = keep & (np.abs(edges) < EDGE_CUT * sigma).all(axis=0)
        if flat.sum() < MIN_BLOCKS:
            break
        sigma = _mad_sigma(detail[flat])
    if mask is None and sigma > 0 and float(x.min()) >= 0.0:
        # magnitude data with a true noise background: its Rayleigh level, where it is lower (anatomy
        # finer than the voxels still inflates HHH; a background can only be inflated by artefacts)
        background = rayleigh_background_sigma(x, sigma)
        if background is not None:
            sigma = min(sigma, background)
    return sigma


RAYLEIGH_MEAN_BELOW_2 = 1.0705  # mean / sigma of a Rayleigh variable below 2 sigma
RAYLEIGH_MEAN_BELOW_1 = 0.6330  # ... below 1 sigma: the shape check


def rayleigh_background_sigma(x: np.ndarray, sigma0: float, min_voxels: int = 1000) -> float | None:
    """Noise level from the background of a one-channel magnitude scan (Rayleigh), or None.

    The histogram mode of the voxels in ``(0, 3 * sigma0]`` starts it (a Rayleigh's mode is its
    ``sigma``); then ``sigma = mean(voxels below 2 sigma) / 1.0705`` is iterated (the truncated
    Rayleigh mean: tissue above 2 sigma does not count). The result is used only when the voxels below
    it have the Rayleigh shape (mean within 0.03 of ``0.633 sigma``): zero-filled, masked, filtered or
    multi-coil (chi) backgrounds fail the check and give None. On dipy's 4 x 4 x 5 mm b0 with added
    Rician noise at 5 / 9 % it is +6 / +7 % from the truth where ``HHH`` is +31 / +26 %
    (``benchmarks/noise_real.py``).
    """
    dark = x[(x > 0) & (x < 6.0 * sigma0)]  # one pass over the scan; the iteration below stays inside
    values = dark[dark <= 3.0 * sigma0]
    if values.size < min_voxels:
        return None
    hist, edges = np.histogram(values, bins=120, range=(0.0, 3.0 * sigma0))
    kernel = np.exp(-0.5 * (np.arange(-6, 7) / 2.0) ** 2)
    smooth = np.convolve(hist.astype(np.float64), kernel / kernel.sum(), mode="same")
    peak = int(np.argmax(smooth))
    if peak < 2 or peak > 80:  # no background peak inside the window (or it is the window's edge)
        return None
    sigma = 0.5 * float(edges[peak] + edges[peak + 1])
    for _ in range(20):
        if sigma >= 3.0 * sigma0:  # drifted out of the window: tissue, not a background
            return None
        below = dark[dark < 2.0 * sigma]
        if below.size < min_voxels:
            return None
        sigma, previous = float(below.mean()) / RAYLEIGH_MEAN_BELOW_2, sigma
        if abs(sigma - previous) < 1e-4 * previous:
            break
    low = dark[dark < sigma]
    if low.size < min_voxels // 4 or abs(float(low.mean()) / sigma - RAYLEIGH_MEAN_BELOW_1) > 0.03:
        return None
    return sigma


def _edge_details(blocks: np.ndarray) -> np.ndarray:
    """The three one-axis Haar details ``(3, X/2, Y/2, Z/2)`` of 2x2x2 ``blocks`` (std sigma for white noise)."""
    halves = []
    for k, axis in enumerate((1, 3, 5)):  # the block's two halves along one axis, summed over the others
        half = blocks.sum(axis=tuple(a for a in (1, 3, 5) if a != axis))  # the pair axis is now axis k + 1
        halves.append(np.take(half, 0, axis=k + 1) - np.take(half, 1, axis=k + 1))
    return np.stack(halves) / np.sqrt(8.0)


def _mad_sigma(detail: np.ndarray) -> float:
    """Standard deviation of zero-mean Gaussian ``detail`` from its median absolute value."""
    return float(np.median(np.abs(detail)) * _MAD_TO_STD)


def estimate_poisson_gaussian(x: np.ndarray, bins: int = 16) -> tuple[float, float]:
    """Fit ``var(y) = gain * E[y] + sigma_read^2`` on a ``(X, Y, Z)`` scan; returns ``(gain, sigma_read^2)``.

    Local means come from 2x2x2 blocks, local variances from the MAD of the Haar ``HHH`` detail in
    each of ``bins`` intensity quantile bins; a least-squares line through them gives the two terms
    (both clipped at zero).
    """
    x = np.asarray(x, dtype=np.float64)
    if x.ndim == 4:
        x = x[0]
    detail = haar_diagonal(x).ravel()
    even = tuple(slice(0, s - s % 2) for s in x.shape)
    blocks = x[even].reshape(x[even].shape[0] // 2, 2, x[even].shape[1] // 2, 2, x[even].shape[2] // 2, 2)
    mean = blocks.mean(axis=(1, 3, 5)).ravel()
    edges = np.unique(np.quantile(mean, np.linspace(0, 1, bins + 1)))
    idx = np.clip(np.searchsorted(edges, mean, side="right") - 1, 0, len(edges) - 2)
    mus, variances = [], []
    for b in range(len(edges) - 1):
        sel = idx == b
        if sel.sum() < 32:
            continue
        mus.append(mean[sel].mean())
        variances.append(_mad_sigma(detail[sel]) ** 2)
    if not mus:
        raise ScanValueError(f"Poisson-Gaussian noise cannot be estimated: fewer than 32 2x2x2 blocks in "
                             f"every intensity bin ({mean.size} blocks); give sigma and noise 'gaussian'")
    if len(mus) < 2:
        return 0.0, float(variances[0])
    gain, offset = np.polyfit(np.asarray(mus), np.asarray(variances), 1)
    return float(max(gain, 0.0)), float(max(offset, 0.0))


def anscombe(y: np.ndarray, gain: float, read_var: float) -> np.ndarray:
    """Generalised Anscombe transform: Poisson-Gaussian data → approximately ``N(f(x), 1)``."""
    g = max(gain, 1e-12)
    return (2.0 / g) * np.sqrt(np.clip(g * y + 0.375 * g * g + read_var, 0.0, None))


def inverse_anscombe(f: np.ndarray, gain: float, read_var: float) -> np.ndarray:
    """Algebraic inverse of :func:`anscombe` (good at the moderate-to-high counts of medical scans)."""
    g = max(gain, 1e-12)
    return ((f * g / 2.0) ** 2 - 0.375 * g * g - read_var) / g


def rician_bias_correct(m: np.ndarray, sigma: float) -> np.ndarray:
    """Remove the Rician bias from a smoothed magnitude: ``sqrt(max(m^2 - sigma^2, 0))``.

    A denoiser trained only on noisy data (self-supervised) estimates ``E[M] ~ sqrt(A^2 + sigma^2)``;
    this first-order correction brings dark tissue (CSF, background) back towards ``A``.
    """
    return np.sqrt(np.clip(np.square(m) - sigma * sigma, 0.0, None)).astype(np.float32)


def guess_noise_model(x: np.ndarray, modality: str = "", units: str = "") -> str:
    """``"gaussian"`` for CT (HU) or signed data, ``"rician"`` for non-negative (MR magnitude) data."""
    if modality.upper() == "CT" or units.upper() == "HU":
        return "gaussian"
    return "rician" if float(np.min(x)) >= 0.0 else "gaussian"
