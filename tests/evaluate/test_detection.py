"""Detection scores on CT phantom boxes: FROC sensitivity and COCO AP of known predictions."""

from __future__ import annotations

import torch

from medgen.data import ct_cohort
from medgen.evaluate.detection import detection_scores, tiny_retinanet


class _Oracle:
    """Predicts each case's boxes (optionally shifted), plus one false positive per volume."""

    def __init__(self, cases: list[dict], shift: float = 0.0) -> None:
        self.cases, self.shift, self.calls = cases, shift, 0

    def eval(self) -> _Oracle:
        return self

    def __call__(self, images: list[torch.Tensor]) -> list[dict]:
        boxes = self.cases[self.calls]["boxes"] + self.shift
        self.calls += 1
        fp = torch.tensor([[0.0, 0.0, 0.0, 2.0, 2.0, 2.0]])
        return [{"boxes": torch.cat([boxes, fp]), "labels": torch.zeros(len(boxes) + 1, dtype=torch.long),
                 "labels_scores": torch.cat([torch.full((len(boxes),), 0.9), torch.tensor([0.5])])}]


def test_scores_are_perfect_for_the_true_boxes_and_zero_for_boxes_moved_off_their_lesions():
    cases = ct_cohort(3, seed=4)
    images = [c["image"] for c in cases]
    targets = [{"boxes": c["boxes"], "labels": c["box_labels"]} for c in cases]
    perfect = detection_scores(_Oracle(cases), images, targets)
    assert perfect["sens@1FP"] == 1.0 and perfect["AP@0.1"] > 0.99 and perfect["max FP/vol"] == 1.0
    missed = detection_scores(_Oracle(cases, shift=20.0), images, targets)
    assert missed["sens@4FP"] == 0.0 and missed["AP@0.1"] == 0.0


def test_tiny_retinanet_trains_on_a_phantom_and_predicts_boxes_inside_the_volume():
    case = ct_cohort(1, seed=2)[0]
    image = ((case["image"].as_tensor().clamp(-1000, 400) + 1000) / 1400)  # (1, 64, 64, 48)
    detector = tiny_retinanet(in_channels=1)
    losses = detector([image], [{"boxes": case["boxes"], "labels": case["box_labels"]}])
    assert set(losses) == {"classification", "box_regression"} and all(torch.isfinite(v) for v in losses.values())
    (losses["classification"] + losses["box_regression"]).backward()
    detector.eval()
    with torch.no_grad():
        (pred,) = detector([image])
    assert pred["boxes"].shape[1] == 6 and len(pred["boxes"]) <= 50
    assert (pred["boxes"][:, :3] >= 0).all() and (pred["boxes"][:, 3:] <= torch.tensor([64, 64, 48])).all()
