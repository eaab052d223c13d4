"""Generation metrics: feature MMD is non-negative, unit-free and separates brains from blobs."""

import pytest
import torch

from medgen.errors import DataError
from medgen.evaluate.generation import fid, mmd, ms_ssim_diversity, ms_ssim_min_size
from medgen.evaluate.suite import _generation_metrics


def _blobs(images: list[torch.Tensor]) -> list[torch.Tensor]:
    """Head-shaped blobs: each brain blurred to its silhouette (what an undertrained generator draws)."""
    pool = torch.nn.functional.avg_pool3d
    return [pool(pool(im[None], 5, 1, 2), 5, 1, 2)[0] for im in images]


def test_feature_mmd_is_small_for_real_sets_large_for_blobs_and_unit_free(cohort_a, cohort_b):
    real_a = [s["image"] for s in cohort_a[:6]]
    real_b = [s["image"] for s in cohort_b]
    same = mmd(real_a, real_b)
    blobs = mmd(real_a, _blobs(real_b))
    assert 0.0 <= same < blobs <= 2.0
    # percentile-normalised per scan: data units (here x1000, shifted) do not change the value
    assert mmd(real_a, [1000 * v - 5 for v in real_b]) == pytest.approx(same, abs=1e-6)
    assert fid(real_a, real_b) < fid(real_a, _blobs(real_b))


def test_mmd_refuses_2d_and_diversity_flags_identical_samples(cohort_a):
    with pytest.raises(DataError, match="3D volumes"):
        mmd(torch.zeros(2, 1, 16, 16), torch.zeros(2, 1, 16, 16))
    vol = cohort_a[0]["image"][:, :48, :48, :48] * 2 - 1
    assert ms_ssim_diversity([vol, vol]) == pytest.approx(1.0, abs=1e-4)
    assert ms_ssim_diversity([vol, cohort_a[1]["image"][:, :48, :48, :48] * 2 - 1]) < 0.99


def test_ms_ssim_size_limit_matches_monai_and_too_small_rows_say_why(cohort_a):
    for kernel_size, scales in ((5, 2), (5, 3), (5, 4), (7, 3)):
        need = ms_ssim_min_size(kernel_size, scales)
        ok = torch.zeros(2, 1, need, need, need)
        assert ms_ssim_diversity(ok, kernel_size=kernel_size, scales=scales) == pytest.approx(1.0)
        with pytest.raises(DataError, match=f">= {need} voxels"):
            ms_ssim_diversity(ok[..., 1:], kernel_size=kernel_size, scales=scales)
    crops = [s["image"][:, 10:50, 15:55, 20:40] for s in cohort_a[:4]]  # (1, 40, 40, 20) of real brain
    rows = _generation_metrics([c[..., 1:] for c in crops[:2]], [c[..., 1:] for c in crops[2:]])
    assert [r["value"] for r in rows] == [None, None]
    assert all("too small" in r["reason"] and "20 voxels" in r["reason"] for r in rows)
    rows = _generation_metrics(crops[:2], crops[2:3])
    assert rows[0]["value"] is None and "2 synthetic" in rows[0]["reason"] and 0 < rows[1]["value"] < 1
