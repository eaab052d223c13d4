"""Fixtures for the evaluation tests: small simulated brain cohorts (3 mm) from the built-in MNI152."""

from __future__ import annotations

import warnings

import pytest
import torch

torch.set_num_threads(1)  # the CI machine has 2 cores shared by every test worker


def _cohort(n: int, seed: int) -> list[torch.Tensor]:
    try:
        from medgen.data import brain_cohort
    except ImportError:  # before medgen.data exports it
        from medgen.data.cohort import brain_cohort
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return brain_cohort(n, resolution=3, seed=seed)


@pytest.fixture(scope="session")
def cohort_a() -> list[dict]:
    """10 subjects (cohort seed 0): image (1, 66, 78, 63) float32 ~[0, 1], label 0-3, 3 mm."""
    return _cohort(10, 0)


@pytest.fixture(scope="session")
def cohort_b() -> list[dict]:
    """6 other subjects (cohort seed 1)."""
    return _cohort(6, 1)
