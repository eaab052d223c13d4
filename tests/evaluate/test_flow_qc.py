"""The patch flow: exact likelihood, real vs corrupted separation, calibrated flags, hallucination check."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from medgen.evaluate.flow import RealNVP, fit_flow
from medgen.evaluate.qc import FlowQC, fit_qc, region_differences


def _auc(negatives: list[float], positives: list[float]) -> float:
    """Probability that a positive outranks a negative (Mann-Whitney), ties count half."""
    return float(np.mean([(p > n) + 0.5 * (p == n) for n in negatives for p in positives]))


def _noise(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    return (x + 0.06 * torch.randn(x.shape, generator=g)).abs()


def _ghosting(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    k = torch.fft.fftn(x, dim=(1, 2, 3))
    k[:, :, ::3] = 0  # every 3rd phase-encoding line lost: ghost copies at 1/3 field of view
    return torch.fft.ifftn(k, dim=(1, 2, 3)).abs()


def _intensity_shift(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    return x * 1.25


def test_flow_is_invertible_and_its_likelihood_is_exact_for_a_gaussian():
    torch.manual_seed(0)
    flow = RealNVP(8, n_couplings=4, hidden=32)
    data = torch.randn(2000, 8) * 2.0 + 1.0
    fit_flow(flow, data, steps=200, batch_size=128, jitter=0.0)
    x = torch.randn(5, 8)
    z, _ = flow(x)
    back = x.clone()
    for i in reversed(range(len(flow.couplings))):  # sample() inverts z the same way
        back = flow.couplings[i].inverse(z if i == len(flow.couplings) - 1 else back)
        back = flow.norms[i].inverse(back[:, torch.argsort(getattr(flow, f"perm{i}"))])
    assert torch.allclose(back, x, atol=1e-4)
    # true density of N(1, 4 I): -log p / D = log(2) + 0.5 log(2 pi) + 0.5 E[z^2] = 1.612 nats/dim
    nll = float(-flow.log_prob(torch.randn(4000, 8) * 2.0 + 1.0).mean().detach() / 8)
    assert abs(nll - (math.log(2) + 0.5 * math.log(2 * math.pi) + 0.5)) < 0.08


def test_flow_separates_real_from_corrupted_scans(cohort_a, cohort_b, tmp_path):
    qc = fit_qc([s["image"] for s in cohort_a], steps=150, hidden=64, n_couplings=4, seed=0)  # learns 5, calibrates 5
    g = torch.Generator().manual_seed(0)
    real = [qc.score(s["image"])["ood"] for s in cohort_b]
    aucs = {}
    for corrupt in (_noise, _ghosting, _intensity_shift):
        bad = [qc.score(corrupt(s["image"].as_tensor(), g))["ood"] for s in cohort_b]
        aucs[corrupt.__name__] = _auc(real, bad)
    assert min(aucs.values()) > 0.9, aucs
    assert sum(r > 1 for r in real) <= 1  # calibrated flags: at most one false alarm among 6 new real subjects
    very_noisy = qc.score((cohort_b[0]["image"].as_tensor() + 0.15 * torch.randn(cohort_b[0]["image"].shape)).abs())
    assert very_noisy["flag"] and "less likely" in very_noisy["reasons"][0]
    blurred = qc.score(torch.nn.functional.avg_pool3d(cohort_b[0]["image"].as_tensor()[None], 5, 1, 2)[0])
    assert blurred["score"] < qc.score_centre  # over-smoothed patches are *more* likely than real ones
    qc.save(tmp_path / "qc")
    again = FlowQC.load(tmp_path / "qc")
    assert again.score(cohort_b[1]["image"])["score"] == qc.score(cohort_b[1]["image"])["score"]


def test_hallucination_check_flags_only_the_region_that_was_changed(cohort_a):
    subject = cohort_a[0]
    noisy = subject["image"].clone()
    g = torch.Generator().manual_seed(1)
    noisy = noisy + 0.03 * torch.randn(noisy.shape, generator=g)
    denoised = subject["image"].clone()  # a perfect denoiser: removes exactly the noise
    rows = region_differences(noisy, denoised, labels=subject["label"], names={1: "csf", 2: "gm", 3: "wm"})
    assert [r["region"] for r in rows] == ["csf", "gm", "wm"]
    assert not any(r["flag"] for r in rows)
    assert all(0.6 < r["mean_abs_sigma"] < 1.1 for r in rows)  # E|N(0, s)| = 0.8 s
    hallucinated = denoised.clone()
    hallucinated[0, 10:20, 10:20, 10:20] += 0.5  # a bright blob in one corner
    rows = region_differences(noisy, hallucinated)
    flagged = [r["region"] for r in rows if r["flag"]]
    assert flagged == ["octant LPI"]
    unc = torch.full_like(noisy, 0.01)
    rows = region_differences(noisy, denoised, uncertainty=unc)
    assert rows[0]["uncertainty_mean"] == pytest.approx(0.01) and rows[0]["uncertainty_p95"] == pytest.approx(0.01)
