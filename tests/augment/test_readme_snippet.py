"""The README's MONAI training snippets (segmentation, detection) run as printed and stay label-consistent."""

from __future__ import annotations

import re
from pathlib import Path

import torch

README = Path(__file__).resolve().parents[2] / "README.md"


def _snippet(marker: str = "segmentation_preset") -> str:
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    (code,) = [b for b in blocks if "CacheDataset" in b and "medgen.augment" in b and marker in b]
    return code


def test_readme_monai_snippet_runs_and_gives_augmented_label_consistent_batches():
    code = _snippet().replace("brain_cohort(20,", "brain_cohort(2,")  # 2 subjects keep the test fast
    scope: dict = {}
    exec(compile(code, str(README), "exec"), scope)  # noqa: S102 - the README's own code, as a user runs it
    batch = next(iter(scope["loader"]))
    assert batch["image"].shape == (2, 1, 48, 48, 48) and batch["label"].shape == (2, 1, 48, 48, 48)
    assert set(torch.unique(batch["label"]).tolist()) <= {0, 1, 2, 3}
    # a collated batch keeps one applied-operations list per case
    for ops in batch["image"].applied_operations:
        assert {"RandDeformd", "RandTissueContrastd", "RandMRArtifactsd"} <= {op["class"] for op in ops}


def test_readme_detection_snippet_trains_retinanet_on_crops_whose_boxes_hold_their_lesions():
    code = _snippet("RandCropBoxByPosNegLabeld").replace("ct_cohort(10,", "ct_cohort(2,")  # one batch
    scope: dict = {}
    exec(compile(code, str(README), "exec"), scope)  # noqa: S102 - the README's own code, as a user runs it
    crops, losses = scope["crops"], scope["losses"]
    assert len(crops) == 4 and all(c["image"].shape == (1, 32, 32, 32) for c in crops)
    assert all(torch.isfinite(v) for v in losses.values()) and float(losses["classification"]) > 0
    n_boxes = hits = 0
    for crop in crops:
        boxes = torch.as_tensor(crop["boxes"]).reshape(-1, 6)
        assert len(boxes) == len(crop["box_labels"]) and (boxes[:, :3] >= 0).all() and (boxes[:, 3:] <= 32).all()
        for b in boxes.long():
            n_boxes += 1
            hits += bool((crop["label"][0, b[0]:b[3], b[1]:b[4], b[2]:b[5]] == 8).any())
        ops = {op["class"] for op in crop["image"].applied_operations}
        assert {"RandLesionInsertd", "RandDeformd", "RandCTArtifactsd", "RandFlipBoxd"} <= ops
    assert n_boxes >= 2 and hits == n_boxes  # every box still frames lesion voxels after insert, warp, flip, crop
