"""Library calls that train or draw leave the caller's global random state as it was, and give the same
result whatever the caller drew before them (real MNI152 crops, tiny step counts)."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from medgen.data import brain_cohort, mni152
from medgen.enhance.denoise import denoise
from medgen.enhance.superres import superres
from medgen.evaluate.downstream import downstream_dice
from medgen.evaluate.qc import fit_qc
from medgen.seeding import seeded


@pytest.fixture(scope="module")
def crop() -> torch.Tensor:
    image = mni152(resolution=2)["image"]
    return image[:, 30:62, 40:72, 30:62].clone()  # (1, 32, 32, 32) real brain


@pytest.fixture(scope="module")
def subjects() -> list[dict]:
    return brain_cohort(3, resolution=3, seed=0)


def _calls(crop, subjects):
    noisy = crop + 4.0 * torch.rand(crop.shape, generator=torch.Generator().manual_seed(1))
    return {
        "denoise (self-supervised)": lambda: denoise(noisy, method="self-supervised", steps=2, refine=0),
        "superres (SMORE)": lambda: superres(crop[..., ::2], factor=2, axis=2, method="smore", steps=2),
        "fit_qc": lambda: fit_qc([s["image"] for s in subjects], steps=2),
        "downstream_dice": lambda: downstream_dice(subjects[:2], subjects[2:], steps=2, roi=(32, 32, 32)),
    }


def _global_draws() -> tuple:
    return float(torch.rand(1)), float(np.random.rand()), random.random()


@pytest.mark.parametrize("name", ["denoise (self-supervised)", "superres (SMORE)", "fit_qc", "downstream_dice"])
def test_call_leaves_the_global_random_state_unchanged(name, crop, subjects):
    call = _calls(crop, subjects)[name]
    with seeded(123):
        expected = _global_draws()
    with seeded(123):
        call()
        assert _global_draws() == expected, f"{name} changed the caller's random state"


def test_seeded_result_does_not_depend_on_what_the_caller_drew(crop, subjects):
    call = _calls(crop, subjects)["denoise (self-supervised)"]
    first = call()
    torch.rand(1000)
    np.random.rand(10)
    assert torch.equal(call().as_tensor(), first.as_tensor())
