"""RandTissueContrastd re-renders a real subject's image from its own label map: new contrast, exact label."""

from __future__ import annotations

import pickle

import pytest
import torch
from monai.transforms import Compose, Invertd

from medgen.augment import RandTissueContrast, RandTissueContrastd
from medgen.errors import DataError


def _label_means(image, label) -> list[float]:
    img, lab = image.as_tensor()[0], label.as_tensor()[0].long()
    return [float(img[lab == k].mean()) for k in range(4)]


def test_new_contrast_follows_the_drawn_label_means_and_leaves_label_and_grid_alone(subject):
    aug = RandTissueContrastd("image", label_key="label", noise=(0.0, 0.0), bias=0.0, blur_vox=0.0)
    orderings = set()
    for seed in range(8):
        out = aug.set_random_state(seed=seed)(dict(subject))
        assert torch.equal(out["label"], subject["label"])
        assert out["image"].shape == subject["image"].shape and out["image"].dtype == torch.float32
        assert torch.allclose(out["image"].affine, subject["image"].affine)
        drawn = out["image"].applied_operations[-1]["extra_info"]["means"][0]
        got = _label_means(out["image"], out["label"])
        # tissue brightness is the drawn one (up to the texture and the final affine intensity map)
        assert sorted(range(4), key=got.__getitem__) == sorted(range(4), key=drawn.__getitem__)
        orderings.add(tuple(sorted(range(1, 4), key=got.__getitem__)))
    assert len(orderings) >= 3  # T1-like, T2-like and other orderings of CSF / GM / WM all occur
    t1_order = tuple(sorted(range(1, 4), key=_label_means(subject["image"], subject["label"]).__getitem__))
    assert orderings - {t1_order}


def test_the_same_seed_gives_the_same_image_and_the_input_range_is_kept(subject):
    a = RandTissueContrastd("image").set_random_state(seed=3)(dict(subject))["image"]
    b = RandTissueContrastd("image").set_random_state(seed=3)(dict(subject))["image"]
    c = RandTissueContrastd("image").set_random_state(seed=4)(dict(subject))["image"]
    assert torch.equal(a.as_tensor(), b.as_tensor()) and not torch.equal(a.as_tensor(), c.as_tensor())
    q = torch.tensor([0.005, 0.995])
    assert torch.allclose(torch.quantile(a.flatten(), q), torch.quantile(subject["image"].flatten(), q), atol=0.02)


def test_array_variant_takes_the_label_and_bad_labels_say_so(subject):
    img = RandTissueContrast().set_random_state(seed=0)(subject["image"], subject["label"])
    assert not torch.equal(img.as_tensor(), subject["image"].as_tensor())
    with pytest.raises(DataError, match="label grid"):
        RandTissueContrast()(subject["image"], subject["label"][:, :10])
    with pytest.raises(DataError, match="integers"):
        RandTissueContrast()(subject["image"], subject["label"].float() - 1)


def test_invertd_passes_through_and_the_transform_pickles(subject):
    t = Compose([RandTissueContrastd("image", prob=1.0)]).set_random_state(seed=1)
    out = t(dict(subject))
    out["pred"] = out["label"].clone()
    inv = Invertd("pred", transform=t, orig_keys="image")(out)
    assert torch.equal(inv["pred"].as_tensor(), subject["label"].as_tensor())
    clone = pickle.loads(pickle.dumps(t))
    assert torch.equal(t(dict(subject))["image"].as_tensor(), clone(dict(subject))["image"].as_tensor())


def test_min_contrast_keeps_every_tissue_apart_and_mix_blends_with_the_scan(subject):
    gaps = []
    for seed in range(12):
        for min_contrast in (0.0, 0.2):
            aug = RandTissueContrastd("image", label_key="label", min_contrast=min_contrast)
            means = sorted(aug.set_random_state(seed=seed)(dict(subject))["image"].applied_operations[-1]
                           ["extra_info"]["means"][0])
            gaps.append((min_contrast, min(b - a for a, b in zip(means, means[1:]))))
    assert all(g >= 0.2 - 1e-4 for c, g in gaps if c > 0)
    assert min(g for c, g in gaps if c == 0) < 0.2  # without it, some draw puts two tissues closer
    own = RandTissueContrastd("image", mix=(0.0, 0.0)).set_random_state(seed=1)(dict(subject))["image"]
    assert torch.allclose(own.as_tensor(), subject["image"].as_tensor(), atol=1e-5)
    full = RandTissueContrastd("image", mix=(1.0, 1.0)).set_random_state(seed=1)(dict(subject))["image"]
    plain = RandTissueContrastd("image").set_random_state(seed=1)(dict(subject))["image"]
    assert torch.allclose(full.as_tensor(), plain.as_tensor(), atol=1e-5)
