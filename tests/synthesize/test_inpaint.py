"""Diffusion inpainting and inpainted lesions on real CT phantoms, with tiny untrained model folders."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import ndimage

from medgen.augment import RandLesionInsertd
from medgen.augment._boxes import box_of_mask
from medgen.data import ct_phantom
from medgen.errors import ConfigError
from medgen.models import ModelConfig, Normalization, build_network, from_dict, load_model, to_dict
from medgen.models.hub import write_model
from medgen.synthesize.inpaint import inpaint_region

TINY = {"channels": [8, 8], "attention": [False, False], "norm_num_groups": 4, "num_head_channels": 4}


def _folder(root, name: str, spacing_mm: float, **diffusion) -> str:
    cfg = from_dict(ModelConfig, {"family": "diffusion", "size": [16, 16, 16], "diffusion": {**TINY, **diffusion}},
                    "model")
    torch.manual_seed(0)
    folder = root / name
    write_model(folder, run_config={"model": to_dict(cfg)}, network=build_network(cfg),
                normalization=Normalization("window", -1000.0, 1000.0, "HU"),
                reference={"affine": np.diag([spacing_mm] * 3 + [1.0]).tolist(), "modality": "CT", "units": "HU"},
                card="tiny untrained test model")
    return str(folder)


@pytest.fixture(scope="module")
def zoo(tmp_path_factory):
    root = tmp_path_factory.mktemp("inpaint")
    return {"labels": _folder(root, "labels", 6.0, label_classes=9), "coarse": _folder(root, "coarse", 12.0),
            "mean": _folder(root, "mean", 6.0, mean_image=True)}


@pytest.fixture(scope="module")
def phantom():
    torch.set_num_threads(1)
    return ct_phantom(3, shape=(48, 48, 32), n_lesions=(1, 1))


def test_inpainting_regenerates_the_region_only_and_is_reproducible(zoo, phantom):
    model = load_model(zoo["labels"])
    before = phantom["image"].clone()
    region = torch.zeros(phantom["image"].shape[1:], dtype=torch.bool)
    region[20:26, 18:24, 12:17] = True
    out = inpaint_region(model, phantom["image"], region, labels=phantom["label"], seed=1, steps=5)
    changed = (out != phantom["image"]).as_tensor()[0]
    assert changed[region].float().mean() > 0.9 and not changed[~region].any()
    assert torch.equal(out.affine, phantom["image"].affine) and out.meta["synthetic"] is True
    assert out.meta["provenance"][-1]["operation"] == "inpaint" and out.meta["provenance"][-1]["seed"] == 1
    assert torch.equal(inpaint_region(model, phantom["image"], region, labels=phantom["label"], seed=1, steps=5), out)
    assert torch.equal(phantom["image"], before)  # the input is never modified


def test_inpainting_resamples_to_the_model_spacing_and_refuses_unfit_models(zoo, phantom):
    region = torch.zeros(phantom["image"].shape[1:], dtype=torch.bool)
    region[10:30, 10:30, 8:20] = True  # 120 x 120 x 72 mm: a 12 mm model sees it in a few voxels
    out = inpaint_region(load_model(zoo["coarse"]), phantom["image"], region, seed=0, steps=3)
    assert not (out != phantom["image"]).as_tensor()[0][~region].any()
    with pytest.raises(ConfigError, match="give labels"):
        inpaint_region(load_model(zoo["labels"]), phantom["image"], region, steps=3)
    with pytest.raises(ConfigError, match="mean_image"):
        inpaint_region(load_model(zoo["mean"]), phantom["image"], region, steps=3)


def test_inpainted_lesion_has_its_label_and_box_and_leaves_the_rest(zoo, phantom):
    liver = (phantom["label"] == 4).to(torch.uint8)
    case = {"image": phantom["image"].clone(), "label": phantom["label"].clone(), "liver": liver,
            "boxes": phantom["boxes"].clone(), "box_labels": phantom["box_labels"].clone()}
    t = RandLesionInsertd("image", "label", mask_key="liver", box_keys="boxes", label_keys="box_labels",
                          lesion_label=8, box_class=0, radius_mm=(10.0, 14.0), model=zoo["labels"], steps=5,
                          device="cpu")
    out = t.set_random_state(seed=4)(case)
    new = (out["label"][0] == 8) & (phantom["label"][0] != 8)
    assert new.sum() > 3 and not new[liver[0] == 0].any()
    assert out["boxes"].shape[0] == phantom["boxes"].shape[0] + 1 and out["box_labels"][-1] == 0
    assert torch.equal(out["boxes"][-1], box_of_mask(new))
    changed = (out["image"] != phantom["image"]).as_tensor()[0]
    near = torch.as_tensor(ndimage.binary_dilation(new.numpy(), iterations=1))  # the rim is regenerated too
    assert changed[new].float().mean() > 0.9 and not changed[~near].any()
    assert out["image"].meta["synthetic"] is True
    assert out["image"].applied_operations[-1]["extra_info"]["generator"] == "inpaint"
    again = t.set_random_state(seed=4)({k: (v.clone() if hasattr(v, "clone") else v) for k, v in case.items()})
    assert torch.equal(again["image"], out["image"]) and torch.equal(again["label"], out["label"])


def test_shipped_ct_model_renders_organs_at_their_hu_and_inpaints_hypodense_lesions():
    """The built-in ``ct-lesions`` model on a phantom it never saw (seed 99): labels steer the image."""
    from medgen.augment._generative import one_hot_labels
    from medgen.synthesize.generate import render_labels

    model = load_model("ct-lesions")
    case = ct_phantom(99, n_lesions=(1, 1))
    crop = (slice(None), slice(16, 48), slice(16, 48), slice(8, 40))
    label, real = case["label"][crop], case["image"][crop]
    rendered = model.normalization.to_units(render_labels(model, one_hot_labels(label, 9, [32, 32, 32]), 0)[0, 0])
    lab = label[0]
    for organ in (0, 2, 3, 4):  # air, fat, lung, liver: -1000 to +60 HU apart
        present = lab == organ
        if present.sum() > 20:
            assert abs(float(rendered[present].mean() - real[0][present].mean())) < 40.0, organ

    t = RandLesionInsertd("image", "label", lesion_label=8, host_labels=(4,), radius_mm=(8.0, 14.0),
                          model="ct-lesions", device="cpu")
    contrasts = []
    for seed in range(3):
        out = t.set_random_state(seed)({"image": case["image"].clone(), "label": case["label"].clone()})
        liver = (case["label"][0] == 4).numpy()
        new = (out["label"][0] == 8).numpy() & liver
        shell = ndimage.binary_dilation(new, iterations=3) & ~ndimage.binary_dilation(new) & liver
        img = out["image"][0].numpy()
        contrasts.append(float(img[new].mean() - img[shell].mean()))
        far = ~ndimage.binary_dilation(new, iterations=1)
        assert np.array_equal(img[far], case["image"][0].numpy()[far])
    assert np.mean(contrasts) < -8.0, contrasts  # the phantom's organ lesions are mostly hypodense
