"""Downstream utility for detection: a CPU-sized MONAI RetinaNet and FROC / COCO scores.

- :func:`tiny_retinanet`: MONAI's ``RetinaNetDetector`` (ATSS matcher, hard-negative sampler) over a
  2-level feature pyramid small enough to train on a CPU, for lesions of 2-12 voxels.
- :func:`detection_scores`: sensitivity at fixed false positives per volume (MONAI's FROC helper)
  and COCO AP / mAP (MONAI's ``COCOMetric``) of a detector on a test set.

MONAI's own ``resnet_fpn_feature_extractor`` needs torchvision, which medgen does not install (its
wheels on PyPI are built against CUDA torch); any MONAI feature extractor or your own detector can
take the place of :func:`tiny_retinanet` in the README's training loop.

>>> detector = tiny_retinanet(in_channels=1)                                          # doctest: +SKIP
>>> detection_scores(detector, [image], [{"boxes": boxes, "labels": labels}])          # doctest: +SKIP
{'sens@1FP': 0.5, 'sens@2FP': 0.75, 'sens@4FP': 1.0, 'max FP/vol': 9.0, 'AP@0.1': 0.61, 'mAP@0.1:0.5': 0.4}
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from monai.networks.blocks import Convolution


class TinyFPN(torch.nn.Module):
    """A 2-level feature pyramid: ``(B, C, X, Y, Z)`` → ``[(B, F, X/2, Y/2, Z/2), (B, F, X/4, Y/4, Z/4)]``.

    ``F = out_channels``; the stride-4 level is added (nearest upsampled) into the stride-2 one.
    """

    def __init__(self, in_channels: int = 1, out_channels: int = 16) -> None:
        super().__init__()

        def conv(i: int, o: int, stride: int) -> Convolution:
            return Convolution(3, i, o, strides=stride, kernel_size=3, norm=("group", {"num_groups": 8}), act="relu")

        self.out_channels = out_channels  # RetinaNet reads this
        self.stride2 = torch.nn.Sequential(conv(in_channels, 8, 1), conv(8, 16, 2))
        self.stride4 = torch.nn.Sequential(conv(16, 32, 2), conv(32, 32, 1))
        self.lateral2, self.lateral4 = torch.nn.Conv3d(16, out_channels, 1), torch.nn.Conv3d(32, out_channels, 1)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        f2 = self.stride2(x)
        p4 = self.lateral4(self.stride4(f2))
        return [self.lateral2(f2) + torch.nn.functional.interpolate(p4, size=f2.shape[2:], mode="nearest"), p4]


def tiny_retinanet(in_channels: int = 1, num_classes: int = 1):
    """A MONAI ``RetinaNetDetector`` over :class:`TinyFPN` (anchors 4³ and 6³ voxels at stride 2, 8³ and
    12³ at stride 4), ATSS matching and hard-negative sampling as in MONAI's detection tutorial.

    Train with ``detector(images, targets)`` → ``{"classification", "box_regression"}`` losses
    (images ``(C, X, Y, Z)`` with X, Y, Z multiples of 4; targets ``{"boxes": (N, 6) voxel xyzxyz,
    "labels": (N,)}``); in ``eval()`` it returns ``{"boxes", "labels", "labels_scores"}`` per image.
    """
    import monai.apps.detection.networks.retinanet_detector as rd
    from monai.apps.detection.networks.retinanet_network import RetinaNet
    from monai.apps.detection.utils.anchor_utils import AnchorGeneratorWithAnchorShape

    # MONAI tests isinstance(matcher, torchvision's Matcher) even with its own ATSS matcher; without
    # torchvision that name is a placeholder object and isinstance would raise
    if not isinstance(rd.Matcher, type):
        rd.Matcher = type("TorchvisionMatcherUnavailable", (), {})
    anchors = AnchorGeneratorWithAnchorShape(feature_map_scales=(1, 2), base_anchor_shapes=((4, 4, 4), (6, 6, 6)))
    detector = rd.RetinaNetDetector(RetinaNet(3, num_classes, 2, TinyFPN(in_channels), size_divisible=4), anchors)
    detector.set_atss_matcher(num_candidates=4, center_in_gt=False)
    detector.set_hard_negative_sampler(batch_size_per_image=64, positive_fraction=0.3, pool_size=20, min_neg=16)
    detector.set_box_selector_parameters(score_thresh=0.02, topk_candidates_per_level=1000, nms_thresh=0.22,
                                         detections_per_img=50)
    return detector


@torch.no_grad()
def detection_scores(detector, images: Sequence[torch.Tensor], targets: Sequence[dict],
                     iou: float = 0.1, fps: Sequence[float] = (1, 2, 4)) -> dict[str, float]:
    """Score ``detector`` (put in ``eval()`` here) on ``images`` ``(C, X, Y, Z)`` with ground truth
    ``targets`` (``{"boxes": (N, 6) voxel xyzxyz, "labels": (N,)}``).

    Returns ``sens@{f}FP`` (FROC: sensitivity at ``f`` false positives per volume; a prediction is a
    hit when MONAI's COCO matching, in descending score order, pairs it with a ground-truth box at
    IoU ``>= iou``), ``max FP/vol``, ``AP@{iou}`` and ``mAP@0.1:0.5`` (COCO, MONAI ``COCOMetric``, up to 50 detections).
    """
    from monai.apps.detection.metrics.coco import COCOMetric
    from monai.apps.detection.metrics.matching import matching_batch
    from monai.data.box_utils import box_iou
    from monai.metrics import compute_froc_curve_data

    detector.eval()
    preds = [detector([torch.as_tensor(image).as_subclass(torch.Tensor)])[0] for image in images]
    gts = [np.asarray(torch.as_tensor(t["boxes"]), dtype=np.float32).reshape(-1, 6) for t in targets]
    gt_labels = [np.asarray(torch.as_tensor(t["labels"])).reshape(-1) for t in targets]
    coco = COCOMetric(classes=["lesion"], iou_list=[iou], iou_range=(0.1, 0.5, 0.05), max_detection=[50],
                      verbose=False)
    matched = matching_batch(box_iou, coco.iou_thresholds, [p["boxes"].numpy() for p in preds],
                             [p["labels"].numpy() for p in preds], [p["labels_scores"].numpy() for p in preds],
                             gts, gt_labels, max_detections=50)
    tp, fp = [], []  # scores of hits and false positives at `iou`, from MONAI's greedy COCO matching
    for per_image in matched:
        for m in per_image.values():
            hit = m["dtMatches"][coco.iou_list_idx[0]].astype(bool)
            tp += m["dtScores"][hit].tolist()
            fp += m["dtScores"][~hit].tolist()
    fps_per_image, sensitivity = compute_froc_curve_data(np.asarray(fp), np.asarray(tp), sum(map(len, gts)),
                                                         len(images))
    out = {f"sens@{f:g}FP": float(np.interp(f, fps_per_image[::-1], sensitivity[::-1])) for f in fps}
    out["max FP/vol"] = len(fp) / len(images)  # every prediction kept
    scores = coco(matched)[0]
    out[f"AP@{iou:g}"] = float(next(v for k, v in scores.items() if k.startswith(f"AP_IoU_{iou:.2f}")))
    out["mAP@0.1:0.5"] = float(next(v for k, v in scores.items() if k.startswith("mAP_IoU")))
    return out
