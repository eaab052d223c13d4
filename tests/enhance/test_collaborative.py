"""Collaborative Wiener refinement on the CT phantom (HU) and the Rician mean map it uses for MR."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from medgen.data import ct_phantom
from medgen.enhance.collaborative import collaborative_wiener, rician_inverse, rician_mean
from medgen.enhance.noise import add_gaussian, add_rician
from medgen.evaluate.fidelity import foreground_mask, psnr


def test_rician_mean_matches_simulated_magnitudes_and_inverts():
    rng = np.random.default_rng(0)
    sigma = 10.0
    signal = np.array([0.0, 5.0, 10.0, 20.0, 40.0, 400.0])
    magnitudes = add_rician(np.repeat(signal[:, None], 200_000, 1), sigma, rng)
    np.testing.assert_allclose(rician_mean(signal, sigma), magnitudes.mean(1), rtol=5e-3)
    np.testing.assert_allclose(rician_inverse(rician_mean(signal, sigma), sigma), signal, atol=0.05)
    assert rician_inverse(np.array([1.0]), sigma)[0] == 0.0  # below the Rayleigh mean: no signal


def test_refinement_of_a_blurred_pilot_on_a_ct_phantom():
    clean = ct_phantom(seed=7, shape=(40, 40, 40), spacing=(6.0, 6.0, 6.0), noise=0)["image"][0].numpy()
    sigma = 60.0
    noisy = add_gaussian(clean, sigma, np.random.default_rng(1))
    before = noisy.copy()
    pilot = ndimage.gaussian_filter(noisy, 1.0)
    mask = foreground_mask(clean)
    refined = collaborative_wiener(noisy, pilot, sigma)
    assert refined.dtype == np.float32 and refined.shape == clean.shape
    assert psnr(refined, clean, mask) > psnr(pilot, clean, mask) + 1.0
    assert abs(float(np.median(refined[mask] - clean[mask]))) < 5.0  # stays in HU, unbiased
    # thin slabs (the memory bound for large scans) give nearly the same result
    slabbed = collaborative_wiener(noisy, pilot, sigma, slab=16)
    assert abs(psnr(slabbed, clean, mask) - psnr(refined, clean, mask)) < 0.3
    # no noise or a scan thinner than a block: the pilot comes back unchanged
    np.testing.assert_array_equal(collaborative_wiener(noisy, pilot, 0.0), pilot)
    np.testing.assert_array_equal(collaborative_wiener(noisy[:, :, :2], pilot[:, :, :2], sigma), pilot[:, :, :2])
    np.testing.assert_array_equal(noisy, before)  # the input is not modified


def test_block_matching_finds_the_nearest_blocks_of_a_real_scan(mni_crop):
    # shifted feature grids must rank candidates exactly like distances computed one by one
    import itertools

    import torch

    from medgen.enhance.collaborative import _match, _pad

    features = torch.as_tensor(mni_crop[:, :, :, :12].numpy()).float()  # (1, 32, 32, 12) MNI intensities
    features = torch.cat([features, features.roll(1, 1)])  # two feature channels
    grid = [torch.tensor([0, 5, 9]), torch.tensor([2, 7]), torch.tensor([0, 4, 8, 11])]
    search, group = 2, 6
    offsets = _match(_pad(features, search), grid, grid[0], search, group)  # (n, group, 3)
    shape = torch.tensor(features.shape[1:])
    refs = list(itertools.product(*[g.tolist() for g in grid]))
    assert offsets.shape == (len(refs), group, 3)
    for ref, found in zip(refs, offsets):
        assert found[0].tolist() == [0, 0, 0]  # the reference block leads its group
        dists = {}
        for off in itertools.product(range(-search, search + 1), repeat=3):
            cand = torch.tensor(ref) + torch.tensor(off)
            if (cand >= 0).all() and (cand < shape).all():
                dists[off] = float(((features[(slice(None), *cand)] - features[(slice(None), *ref)]) ** 2).sum())
        want = sorted(dists.values())[: group]
        got = [dists[tuple(o.tolist())] for o in found]  # every chosen block lies inside the volume
        np.testing.assert_allclose(sorted(got), want, rtol=1e-5, atol=1e-3)


def test_tolerant_matching_removes_the_noise_a_network_pilot_shares_with_the_scan():
    # a network's output keeps a trace of the scan's noise; ranking look-alike blocks by it strictly picks
    # blocks with similar noise, which averaging then keeps (3 passes, as the default denoiser runs them)
    from medgen.enhance.denoise import denoise_array

    clean = ct_phantom(seed=7, shape=(48, 48, 48), spacing=(4.0, 4.0, 3.0), noise=0)["image"][0].numpy()
    sigma = 80.0
    noisy = add_gaussian(clean, sigma, np.random.default_rng(2))
    mask = foreground_mask(clean)
    pilot = denoise_array(noisy, noise="gaussian", sigma=sigma, refine=0)[0]
    result = {}
    for tolerance in (0.0, 1.0):
        out = pilot
        for _ in range(3):
            out = collaborative_wiener(noisy, out, sigma, tolerance=tolerance)
        result[tolerance] = psnr(out, clean, mask)
    assert result[1.0] > result[0.0] + 0.5


def test_ties_are_broken_towards_blocks_that_do_not_overlap(mni_crop):
    import torch

    from medgen.enhance.collaborative import _match, _pad

    features = torch.as_tensor(mni_crop.numpy()).float()  # (1, 32, 32, 32) MNI intensities
    grid = [torch.tensor([4, 14]), torch.tensor([4, 20]), torch.tensor([4, 27])]
    search, group, patch = 4, 8, 4
    padded = _pad(features, search)
    strict = _match(padded, grid, grid[0], search, group)
    tied = _match(padded, grid, grid[0], search, group, tolerance=1e12, patch=patch)  # every distance ties
    assert (strict[:, 1:] % patch != 0).any()  # the strict ranking takes overlapping neighbours
    for ref, found in zip(torch.cartesian_prod(*grid), tied):
        assert found[0].tolist() == [0, 0, 0]
        assert (found % patch == 0).all()  # then only blocks on the lattice that do not overlap
        assert len({tuple(o.tolist()) for o in found}) == group
        inside = ref + found
        assert (inside >= 0).all() and (inside <= 31).all()  # never outside the volume
        assert (found[1:].abs().sum(-1) >= patch * 2).all()  # the farthest lattice points first
