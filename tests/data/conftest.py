"""Fixtures of the built-in data tests: a small simulated cohort and CT phantoms (3 mm, fast)."""

from __future__ import annotations

import pytest

from medgen.data import brain_cohort, ct_cohort


@pytest.fixture(scope="session")
def cohort3():
    """Four simulated T1 subjects at 3 mm, cohort seed 0 (read-only: shared by the session)."""
    return brain_cohort(4, resolution=3, seed=0, contrast="t1")


@pytest.fixture(scope="session")
def phantoms():
    """Three CT phantoms (64 x 64 x 48, 6 mm), cohort seed 0, 2-6 lesions each (read-only)."""
    return ct_cohort(3, seed=0, n_lesions=(2, 6))
