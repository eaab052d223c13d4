"""segmentation_preset: one MONAI transform, reproducible by seed, label kept with the image, on real
cohort subjects and a CT phantom."""

from __future__ import annotations

import pytest
import torch
from monai.transforms import Compose

from medgen.augment import segmentation_preset
from medgen.data import ct_cohort
from medgen.errors import ConfigError


def _draws(preset: Compose, subject: dict, n: int, seed: int = 0) -> list[dict]:
    preset.set_random_state(seed=seed)
    return [preset({k: v.clone() for k, v in subject.items()}) for _ in range(n)]


def test_preset_keeps_shapes_and_label_classes_and_repeats_by_seed(subject):
    preset = segmentation_preset("image", "label")
    first, again = _draws(preset, subject, 6), _draws(preset, subject, 6)
    for out, rep in zip(first, again):
        assert out["image"].shape == subject["image"].shape and out["label"].shape == subject["label"].shape
        assert set(torch.unique(out["label"]).tolist()) <= {0, 1, 2, 3}
        assert torch.equal(out["image"], rep["image"]) and torch.equal(out["label"], rep["label"])
    assert any(not torch.equal(out["image"], subject["image"]) for out in first)


def test_most_draws_keep_the_scans_own_contrast(subject):
    """Tissue contrast is re-rendered on a fraction of draws: in most, white matter stays brighter than
    grey matter (T1) — the draws that taught README's first recipe to forget T1 are the minority."""
    preset = segmentation_preset("image", "label")
    draws = _draws(preset, subject, 16, seed=1)
    t1_like = [float(d["image"][d["label"] == 3].mean()) > float(d["image"][d["label"] == 2].mean()) for d in draws]
    assert sum(t1_like) >= 10
    preset_all = segmentation_preset("image", "label", contrast_prob=1.0)
    flipped = _draws(preset_all, subject, 16, seed=1)
    assert sum(float(d["image"][d["label"] == 3].mean()) > float(d["image"][d["label"] == 2].mean())
               for d in flipped) < sum(t1_like)


def test_ct_preset_runs_on_a_phantom_in_hounsfield_units():
    case = ct_cohort(1, seed=3)[0]
    out = segmentation_preset("image", "label", modality="ct", strength="strong")(
        {"image": case["image"].clone(), "label": case["label"].clone()})
    assert out["image"].shape == case["image"].shape
    assert float(out["image"].min()) < -500  # air stays air-like: HU, not rescaled


@pytest.mark.parametrize("kwargs, key", [({"modality": "pet"}, "modality"), ({"strength": "max"}, "strength"),
                                         ({"contrast_prob": 1.5}, "contrast_prob")])
def test_bad_options_name_their_key(kwargs, key):
    with pytest.raises(ConfigError, match=key):
        segmentation_preset("image", "label", **kwargs)
