"""RandDeformd moves image, label map and boxes together, and Invertd undoes it."""

from __future__ import annotations

import numpy as np
import torch
from monai.transforms import Compose, Invertd

from medgen.augment import RandDeform, RandDeformd
from medgen.augment._boxes import box_of_mask
from medgen.data import simulate_subject, subject_seed


def _lesion(shape, centre, radii) -> torch.Tensor:
    grid = np.meshgrid(*[np.arange(n) for n in shape], indexing="ij")
    inside = sum(((g - c) / r) ** 2 for g, c, r in zip(grid, centre, radii)) <= 1.0
    return torch.as_tensor(inside)


def _class_means_error(image, label) -> float:
    """Mean |image - mean of its tissue class|: small when label and image agree voxel by voxel."""
    img, lab = image.as_tensor()[0], label.as_tensor()[0].long()
    means = torch.stack([img[lab == k].mean() for k in range(4)])
    return float((img - means[lab]).abs().mean())


def _case(subject):
    lesion = _lesion(subject["image"].shape[1:], (30, 40, 35), (6, 4, 5))
    return {**subject, "lesion": subject["label"].clone().zero_() + lesion[None].to(torch.uint8),
            "boxes": box_of_mask(lesion)[None], "box_labels": torch.tensor([7])}


def _deform(seed=0):
    return RandDeformd(["image", "label", "lesion"], box_keys="boxes", box_ref_image_keys="image",
                       label_keys="box_labels", mode=["bilinear", "nearest", "nearest"], strength=1.0
                       ).set_random_state(seed=seed)


def test_image_label_and_box_move_together_and_boxes_stay_tight(subject):
    case = _case(subject)
    out = _deform()(case)
    assert out["label"].dtype == torch.uint8 and set(out["label"].unique().tolist()) <= {0, 1, 2, 3}
    moved = (out["label"] != case["label"]).float().mean()
    assert moved > 0.03  # the anatomy really moved
    # the deformed image still agrees with the deformed label as well as the original pair does,
    # and much better than with the label left behind
    together = _class_means_error(out["image"], out["label"])
    assert together < 1.1 * _class_means_error(case["image"], case["label"])
    assert together < 0.8 * _class_means_error(out["image"], case["label"])
    # box -> mask -> warp -> box lands on the tight box of the warped lesion (within a voxel)
    truth = box_of_mask(out["lesion"][0])
    assert torch.allclose(out["boxes"][0], truth, atol=1.0), (out["boxes"], truth)
    assert out["box_labels"].tolist() == [7]
    assert out["image"].applied_operations[-1]["class"] == "RandDeformd"


def test_box_that_leaves_the_volume_is_dropped_with_its_label(subject):
    case = _case(subject)
    case["boxes"] = torch.tensor([[30.0, 38, 32, 34, 42, 38], [0, 0, 0, 1, 1, 1]])
    case["box_labels"] = torch.tensor([1, 2])
    shifted = RandDeformd("image", box_keys="boxes", label_keys="box_labels", strength=3.0).set_random_state(seed=5)
    out = shifted(case)
    assert out["boxes"].shape[0] == out["box_labels"].shape[0] >= 1
    assert out["box_labels"][0] == 1


def test_inverse_and_invertd_bring_prediction_back_to_the_original_grid():
    # noise-free subject: two bilinear resamplings smooth Rician noise, which would hide the warp error
    clean = simulate_subject(subject_seed(0, 0), 3, "t1", noise=0.0)
    case = _case({"image": clean["image"], "label": clean["label"]})
    t = Compose([_deform(seed=2)])
    out = t(case)
    # at inference: a "prediction" in the deformed space goes back through the label's trace
    out["pred"] = out["label"].clone()
    inv = Invertd("pred", transform=t, orig_keys="label", nearest_interp=True)(out)
    assert (inv["pred"] != case["label"]).float().mean() < 0.02
    forward_change = (out["image"] - case["image"]).abs().mean()
    back = t.inverse(out)  # (pops the trace of `out` in place, as MONAI's inverses do)
    assert (back["label"] != case["label"]).float().mean() < 0.02
    # the inverse undoes most of the warp; what remains is the blur of two bilinear resamplings
    assert (back["image"] - case["image"]).abs().mean() < 0.5 * forward_change
    # boxes come back around the original lesion box, up to ~2 voxels looser per face: the inverse warps
    # the ellipsoid inscribed in the *warped* box, which is not the warped ellipsoid, and nearest-neighbour
    # rounding at voxel edges makes the exact voxel platform-dependent
    back_box, orig_box = back["boxes"][0].as_tensor(), case["boxes"][0]
    assert torch.allclose(back_box, orig_box, atol=2.0), (back_box, orig_box)
    assert (back_box[:3] <= orig_box[:3] + 1).all() and (back_box[3:] >= orig_box[3:] - 1).all()


def test_array_variant_is_reproducible_by_seed(subject):
    a = RandDeform(strength=1.0).set_random_state(seed=4)(subject["image"])
    b = RandDeform(strength=1.0).set_random_state(seed=4)(subject["image"])
    assert torch.equal(a.as_tensor(), b.as_tensor())
    assert not torch.equal(a.as_tensor(), subject["image"].as_tensor())
