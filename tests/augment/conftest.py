"""Fixtures for the augmentation tests: subjects of the built-in simulated cohort (3 mm, real MNI anatomy)."""

from __future__ import annotations

import pytest
import torch

from medgen.data.cohort import brain_cohort


@pytest.fixture(scope="session")
def brain_subjects() -> list[dict]:
    """Two simulated T1-like subjects ``{"image" (1, 66, 78, 63) float32, "label" uint8 0-3}``."""
    torch.set_num_threads(1)
    return brain_cohort(2, resolution=3, seed=0)


@pytest.fixture()
def subject(brain_subjects) -> dict:
    """A fresh copy of the first subject (tests may modify it)."""
    s = brain_subjects[0]
    return {"image": s["image"].clone(), "label": s["label"].clone()}
