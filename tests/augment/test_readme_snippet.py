"""The README's MONAI training snippet runs as printed and yields label-consistent batches."""

from __future__ import annotations

import re
from pathlib import Path

import torch

README = Path(__file__).resolve().parents[2] / "README.md"


def _snippet() -> str:
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    (code,) = [b for b in blocks if "CacheDataset" in b and "medgen.augment" in b]
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
