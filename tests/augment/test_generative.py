"""Generative transforms with real (tiny, untrained) model folders of the zoo: lazy, picklable, consistent."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch

from medgen.augment import RandGenerativeVariationd, RandLesionInsertd, RandSyntheticPaird
from medgen.augment._boxes import box_of_mask
from medgen.augment._lazy_model import _CACHE
from medgen.io import make_scan
from medgen.models import ModelConfig, Normalization, build_network, from_dict, to_dict
from medgen.models.hub import write_model

SIZE = [24, 24, 24]


def _model_folder(root, family: str, **section) -> str:
    """A tiny untrained model folder on the cohort's 3 mm MR grid."""
    cfg = from_dict(ModelConfig, {"family": family, "size": SIZE, **section}, "model")
    torch.manual_seed(0)
    folder = root / family / "model"
    write_model(folder, run_config={"model": to_dict(cfg)}, network=build_network(cfg),
                normalization=Normalization("percentile", 0.0, 1.0),
                reference={"affine": np.diag([3.0, 3.0, 3.0, 1.0]).tolist(), "modality": "MR"},
                card="tiny untrained test model")
    return str(folder)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("zoo")
    return {
        "diffusion": _model_folder(root, "diffusion", diffusion={
            "channels": [8, 8], "attention": [False, False], "norm_num_groups": 4, "num_head_channels": 4}),
        "spade": _model_folder(root, "gan", gan={"latent_dim": 8, "channels": [8, 4], "label_classes": 4}),
    }


@pytest.fixture()
def small(subject):
    return {"image": subject["image"][:, 20:44, 27:51, 20:44].clone(),
            "label": subject["label"][:, 20:44, 27:51, 20:44].clone()}


def test_variation_changes_image_keeps_label_and_loads_the_model_lazily(models, small):
    t = RandGenerativeVariationd("image", model=models["diffusion"], strength=(0.3, 0.3), steps=10, device="cpu")
    assert not t.transform.model.loaded and len(pickle.dumps(t)) < 20_000  # a path, not weights
    out = t.set_random_state(seed=0)(small)
    assert torch.equal(out["label"], small["label"])
    assert out["image"].shape == small["image"].shape and out["image"].meta["synthetic"] is True
    assert not torch.allclose(out["image"], small["image"])
    record = out["image"].applied_operations[-1]["extra_info"]
    assert record["strength"] == 0.3 and record["model"]
    again = t.set_random_state(seed=0)(small)
    assert torch.equal(again["image"], out["image"])
    assert sum(1 for k in _CACHE if k[0].endswith("diffusion/model")) == 1  # loaded once in this process
    clone = pickle.loads(pickle.dumps(t))
    assert len(pickle.dumps(clone)) < 20_000  # the loaded network is never pickled


def test_synthetic_pair_gives_a_deformed_label_and_an_image_on_its_grid(models, small):
    t = RandSyntheticPaird("image", "label", model=models["spade"], strength=1.0, device="cpu")
    out = t.set_random_state(seed=1)(small)
    assert out["label"].dtype == small["label"].dtype and set(out["label"].unique().tolist()) <= {0, 1, 2, 3}
    assert 0 < (out["label"] != small["label"]).float().mean() < 0.5
    assert out["image"].shape == small["image"].shape and out["image"].meta["synthetic"] is True
    assert torch.equal(out["image"].affine, small["image"].affine)
    back = t.inverse(out)
    assert (back["label"] != small["label"]).float().mean() < (out["label"] != small["label"]).float().mean()


def test_generative_transforms_refuse_another_grid_modality_or_label_class_in_one_line(models, small):
    from monai.transforms import Spacing

    from medgen.errors import DataError

    fine = Spacing(pixdim=(1.5, 1.5, 1.5), mode="nearest")(small["label"].float())  # a 1.5 mm label map
    with pytest.raises(DataError, match=r"3 x 3 x 3 mm voxels but this label map has 1.5 x 1.5 x 1.5 mm"):
        RandSyntheticPaird(model=models["spade"], device="cpu")({"image": fine.clone(), "label": fine})
    ct = small["image"].clone()
    ct.meta["modality"] = "CT"
    with pytest.raises(DataError, match="trained on MR scans but this image is CT"):
        RandGenerativeVariationd("image", model=models["diffusion"], device="cpu")({"image": ct})
    five = small["label"].clone()
    five[0, 0, 0, 0] = 5  # a class the 4-class generator does not know
    with pytest.raises(DataError, match="knows label classes 0-3; this label map has class 5"):
        RandSyntheticPaird(model=models["spade"], device="cpu")({"image": small["image"], "label": five})


def test_synthetic_pair_refuses_a_model_that_is_not_label_conditioned(models, small):
    from medgen.errors import ConfigError

    with pytest.raises(ConfigError, match="label-conditioned GAN"):
        RandSyntheticPaird(model=models["diffusion"], device="cpu")(small)


def test_lesion_lands_inside_the_mask_with_matching_label_and_box():
    hu = np.full((1, 40, 40, 30), -1000.0, np.float32)
    hu[:, 5:35, 5:35, 3:27] = 50.0  # soft-tissue body
    organ = np.zeros((1, 40, 40, 30), np.uint8)
    organ[:, 10:30, 12:28, 8:22] = 1
    affine = np.diag([1.5, 1.5, 2.5, 1.0])
    case = {"image": make_scan(hu, affine, modality="CT", units="HU"), "organ": torch.as_tensor(organ),
            "label": torch.zeros((1, 40, 40, 30), dtype=torch.uint8),
            "boxes": torch.tensor([[1.0, 1, 1, 3, 3, 3]]), "box_labels": torch.tensor([2])}
    t = RandLesionInsertd("image", "label", mask_key="organ", box_keys="boxes", label_keys="box_labels",
                          lesion_label=5, box_class=1, radius_mm=(4.0, 6.0), contrast=(-50.0, -50.0))
    out = t.set_random_state(seed=2)(case)
    lesion = out["label"][0] == 5
    assert lesion.sum() > 10 and not lesion[torch.as_tensor(organ[0]) == 0].any()
    assert out["boxes"].shape == (2, 6) and out["box_labels"].tolist() == [2, 1]
    assert torch.equal(out["boxes"][1], box_of_mask(lesion))
    delta = (out["image"] - case["image"]).as_tensor()[0]
    assert abs(float(delta[lesion].mean()) + 50.0) < 15.0 and float(delta[~lesion].abs().mean()) < 1.0
    assert out["image"].applied_operations[-1]["extra_info"]["generator"] == "procedural"
