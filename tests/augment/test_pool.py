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
    # cached: the same cases from memory, and editing a served case in place never reaches the cache
    cached = SyntheticPoolDataset(folder, cache=True)
    (folder / "images" / "case-00001.nii.gz").unlink()  # served from memory: the files are not read again
    cached[1]["image"][:] = -1.0
    assert torch.equal(cached[1]["image"].as_tensor(), case["image"].as_tensor())


def test_pool_is_never_overwritten_silently_and_bad_folders_say_so(subject, tmp_path):
    write_pool(tmp_path / "pool", _generator(subject), 1)
    with pytest.raises(ScanWriteError):
        write_pool(tmp_path / "pool", _generator(subject), 1)
    with pytest.raises(DataError, match="not a synthetic pool"):
        SyntheticPoolDataset(tmp_path)


def test_pool_with_a_missing_or_corrupt_case_reports_it_and_skips_it_never_serves_zeros(subject, tmp_path):
    from medgen.errors import MedgenWarning

    folder = write_pool(tmp_path / "pool", _generator(subject), 4, seed=5)
    intact = [SyntheticPoolDataset(folder)[i]["image"].as_tensor() for i in range(4)]
    (folder / "labels" / "case-00001.nii.gz").unlink()  # a missing file: left out when the pool is listed
    with pytest.warns(MedgenWarning, match=r"case case-00001: labels/case-00001.nii.gz is missing; skipped"):
        ds = SyntheticPoolDataset(folder)
    assert len(ds) == 3
    corrupt = folder / "images" / "case-00002.nii.gz"  # a truncated file: found when it is read
    corrupt.write_bytes(corrupt.read_bytes()[:200])
    with pytest.warns(MedgenWarning, match=r"case-00002.nii.gz.*case skipped"):
        served = ds[1]["image"].as_tensor()  # case-00002's place: the next readable case instead
    assert torch.equal(served, intact[3]) and served.abs().sum() > 0
    with pytest.warns(MedgenWarning) as caught:
        cached = SyntheticPoolDataset(folder, cache=True)
    assert sorted(str(w.message).split("case-0000")[1][0] for w in caught) == ["1", "2"]
    assert len(cached) == 2 and all(c["image"].abs().sum() > 0 for c in cached)


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


def _tiny_model(folder, **gan):
    """An untrained 6 mm GAN model folder (label-conditioned when ``label_classes`` is given)."""
    import numpy as np

    from medgen.models import ModelConfig, Normalization, build_network, from_dict, to_dict
    from medgen.models.hub import write_model

    cfg = from_dict(ModelConfig, {"family": "gan", "size": [32, 40, 32],
                                  "gan": {"latent_dim": 8, "channels": [8, 4], **gan}}, "model")
    torch.manual_seed(0)
    write_model(folder, run_config={"model": to_dict(cfg)}, network=build_network(cfg),
                normalization=Normalization("percentile", 0.0, 1.0),
                reference={"affine": np.diag([6.0, 6.0, 6.0, 1.0]).tolist()}, card="tiny untrained test model")
    return folder


def test_cli_pool_of_a_label_gan_holds_exact_pairs_from_deformed_real_labels(brain_subjects, tmp_path):
    from typer.testing import CliRunner

    from medgen.cli import app
    from medgen.data import export_dataset

    model = _tiny_model(tmp_path / "spade", label_classes=4)
    real = tmp_path / "real"
    export_dataset(real, n_subjects=2, resolution=3, seed=0)
    runner = CliRunner()
    args = ["synthesize", str(model), "--pool", "--num", "3", "--out", str(tmp_path / "pool"),
            "--labels", str(real), "--seed", "4", "--device", "cpu"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    ds = SyntheticPoolDataset(tmp_path / "pool")
    assert len(ds) == 3
    index = json.loads((tmp_path / "pool" / "dataset.json").read_text())
    assert "spade" in index["generator"] and index["seed"] == 4
    originals = [s["label"] for s in brain_subjects]
    for case in (ds[0], ds[1], ds[2]):
        assert case["image"].meta["synthetic"] and case["label"].meta["synthetic"]
        assert case["image"].shape == case["label"].shape == originals[0].shape  # on the real labels' 3 mm grid
        assert set(case["label"].unique().tolist()) == {0, 1, 2, 3}
        assert all(not torch.equal(case["label"], o) for o in originals)  # deformed: new anatomy
    # the same seed gives the same pool; an existing pool is never replaced without --overwrite
    again = runner.invoke(app, [*args[:6], str(tmp_path / "again"), *args[7:]])
    assert again.exit_code == 0, again.output
    assert torch.equal(SyntheticPoolDataset(tmp_path / "again")[1]["label"], ds[1]["label"])
    refused = runner.invoke(app, args)
    assert refused.exit_code != 0 and "already exists" in refused.output


def test_pool_of_an_unconditional_model_has_images_only_and_label_gan_needs_labels(tmp_path):
    from medgen.augment import write_model_pool
    from medgen.errors import ConfigError

    folder = write_model_pool(_tiny_model(tmp_path / "gan"), tmp_path / "pool", 2, seed=0, device="cpu")
    cases = SyntheticPoolDataset(folder)
    assert len(cases) == 2 and "label" not in cases[0]
    assert cases[0]["image"].shape == (1, 32, 40, 32) and cases[0]["image"].meta["synthetic"]
    assert not torch.equal(cases[0]["image"], cases[1]["image"])
    with pytest.raises(ConfigError, match="label maps"):
        write_model_pool(_tiny_model(tmp_path / "spade", label_classes=4), tmp_path / "p2", 1, device="cpu")
