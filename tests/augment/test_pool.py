"""Synthetic pools on disk and mixing real with synthetic cases at a chosen ratio."""

from __future__ import annotations

import json

import pytest
import torch

from medgen.augment import MixedDataset, SyntheticPoolDataset, write_pool
from medgen.errors import DataError, ScanWriteError


def _generator(subject):
    def generate(seed: int) -> dict:
        g = torch.Generator().manual_seed(seed)
        image = subject["image"][:, ::2, ::2, ::2] + 0.01 * torch.randn(1, 33, 39, 32, generator=g)
        return {"image": image, "label": subject["label"][:, ::2, ::2, ::2],
                "boxes": torch.tensor([[2.0, 3, 4, 10, 11, 12]]), "box_labels": torch.tensor([1])}
    return generate


def test_pool_round_trips_images_labels_and_boxes_marked_synthetic(subject, tmp_path):
    gen = _generator(subject)
    folder = write_pool(tmp_path / "pool", gen, 3, seed=5, generator_name="test-generator")
    index = json.loads((folder / "dataset.json").read_text())
    assert index["num_cases"] == 3 and index["synthetic"] is True
    ds = SyntheticPoolDataset(folder)
    assert len(ds) == 3
    case = ds[1]
    expected = gen(index["cases"][1]["seed"])
    assert torch.allclose(case["image"].as_tensor(), expected["image"].as_tensor(), atol=1e-6)
    assert torch.equal(case["label"].as_tensor(), expected["label"].as_tensor())
    assert case["label"].dtype == torch.uint8 and torch.equal(case["boxes"], expected["boxes"])
    assert case["image"].meta["synthetic"] is True
    assert torch.allclose(case["image"].affine, expected["image"].affine.double(), atol=1e-4)


def test_pool_is_never_overwritten_silently_and_bad_folders_say_so(subject, tmp_path):
    write_pool(tmp_path / "pool", _generator(subject), 1)
    with pytest.raises(ScanWriteError):
        write_pool(tmp_path / "pool", _generator(subject), 1)
    with pytest.raises(DataError, match="not a synthetic pool"):
        SyntheticPoolDataset(tmp_path)


def test_mixing_serves_the_chosen_ratio_deterministically_and_uses_every_real_case():
    real, synthetic = [{"i": i} for i in range(6)], [{"i": 100 + i} for i in range(20)]
    mixed = MixedDataset(real, synthetic, synthetic_fraction=0.25, seed=0)
    assert len(mixed) == 8
    items = [mixed[i] for i in range(len(mixed))]
    assert sum(x["synthetic"] for x in items) == 2
    assert sorted(x["i"] for x in items if not x["synthetic"]) == list(range(6))
    again = MixedDataset(real, synthetic, synthetic_fraction=0.25, seed=0)
    assert [again[i] for i in range(8)] == items
    mixed.set_epoch(1)
    assert [mixed[i] for i in range(8)] != items
