"""Synthetic pools: generate N image/label(/box) cases to disk once, then serve them like real data.

Generating on the fly (GAN or diffusion per training step) would make the data loader the
bottleneck; a pool is written once and read back at file speed. Layout (a MONAI-style datalist)::

    pool/
      dataset.json        {"name", "synthetic": true, "generator", "seed", "num_cases",
                           "cases": [{"id", "image", "label"?, "boxes"?, "box_labels"?, "seed"}]}
      images/<id>.nii.gz  (C, X, Y, Z) float32, provenance marked synthetic
      labels/<id>.nii.gz  (1, X, Y, Z) uint8 label map (when the generator gives one)

Paths in ``dataset.json`` are relative to the pool folder; boxes are MONAI ``StandardMode``
``(N, 6)`` in voxel coordinates of the image. The pool is written atomically (a half-written pool
never exists under its name).

>>> write_pool("pool/", lambda seed: my_generator(seed), 200, seed=0)      # doctest: +SKIP
>>> ds = SyntheticPoolDataset("pool/", transform=train_transforms)          # doctest: +SKIP
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from monai.data import Dataset
from monai.transforms import apply_transform

from medgen.errors import DataError
from medgen.io import load_scan, mark, save_scan
from medgen.io.atomic import atomic_path

POOL_INDEX = "dataset.json"


def case_seed(seed: int, index: int) -> int:
    """Seed of case ``index`` of a pool drawn with ``seed`` (independent streams)."""
    return int(np.random.SeedSequence([seed, index]).generate_state(1)[0])


def write_pool(
    folder: str | Path,
    generate: Callable[[int], dict[str, Any]],
    num_cases: int,
    *,
    seed: int = 0,
    name: str = "synthetic-pool",
    generator_name: str = "",
    overwrite: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> Path:
    """Write ``num_cases`` cases from ``generate(case_seed) -> {"image", "label"?, "boxes"?, "box_labels"?}``.

    Args:
        folder: the pool folder to create (refused if it exists, unless ``overwrite``).
        generate: called once per case with that case's seed (:func:`case_seed` ``(seed, i)``);
            returns ``image`` MetaTensor ``(C, X, Y, Z)``, optional ``label`` ``(1, X, Y, Z)`` integer
            map, optional ``boxes`` ``(N, 6)`` StandardMode voxel boxes with ``box_labels`` ``(N,)``.
        seed: pool seed; the same seed and generator give the same pool.
        generator_name: recorded in ``dataset.json`` and each image's provenance.
        progress: ``progress(done, total)`` after each case.

    Returns:
        The pool folder.
    """
    if num_cases < 1:
        raise DataError(f"{folder}: a pool needs at least one case (got num_cases={num_cases})")
    cases = []
    with atomic_path(folder, overwrite=overwrite, is_dir=True) as tmp:
        (tmp / "images").mkdir()
        for i in range(num_cases):
            s = case_seed(seed, i)
            item = generate(s)
            case_id = f"case-{i:05d}"
            image = mark(item["image"], "synthetic-pool", synthetic=True, model=generator_name or None, seed=s)
            save_scan(image, tmp / "images" / f"{case_id}.nii.gz")
            entry: dict[str, Any] = {"id": case_id, "image": f"images/{case_id}.nii.gz", "seed": s}
            if item.get("label") is not None:
                (tmp / "labels").mkdir(exist_ok=True)
                label = mark(item["label"], "synthetic-pool-label", synthetic=True, model=generator_name or None,
                             seed=s)
                save_scan(label, tmp / "labels" / f"{case_id}.nii.gz", dtype="uint8")
                entry["label"] = f"labels/{case_id}.nii.gz"
            if item.get("boxes") is not None:
                entry["boxes"] = torch.as_tensor(item["boxes"]).reshape(-1, 6).tolist()
                entry["box_labels"] = torch.as_tensor(item.get("box_labels", [])).reshape(-1).tolist()
            cases.append(entry)
            if progress:
                progress(i + 1, num_cases)
        index = {"name": name, "synthetic": True, "generator": generator_name, "seed": seed,
                 "num_cases": num_cases, "cases": cases}
        (tmp / POOL_INDEX).write_text(json.dumps(index, indent=1))
    return Path(folder)


def pool_datalist(folder: str | Path) -> list[dict[str, Any]]:
    """The pool's cases as a MONAI datalist: absolute ``image``/``label`` paths, boxes as lists."""
    root = Path(folder)
    index_path = root / POOL_INDEX
    if not index_path.is_file():
        raise DataError(f"{root}: not a synthetic pool (missing {POOL_INDEX}); write one with write_pool")
    try:
        index = json.loads(index_path.read_text())
        cases = index["cases"]
    except (ValueError, KeyError) as err:
        raise DataError(f"{index_path}: unreadable pool index ({err})") from None
    out = []
    for case in cases:
        entry = dict(case)
        for key in ("image", "label"):
            if key in entry:
                entry[key] = str(root / entry[key])
        out.append(entry)
    return out


def load_case(entry: dict[str, Any]) -> dict[str, Any]:
    """Read one datalist entry: ``image`` float32 MetaTensor, ``label`` uint8, ``boxes`` float32 ``(N, 6)``."""
    case: dict[str, Any] = {"id": entry.get("id", ""), "image": load_scan(entry["image"])}
    if "label" in entry:
        case["label"] = load_scan(entry["label"]).round().to(torch.uint8)
    if "boxes" in entry:
        case["boxes"] = torch.as_tensor(entry["boxes"], dtype=torch.float32).reshape(-1, 6)
        case["box_labels"] = torch.as_tensor(entry.get("box_labels", []), dtype=torch.long)
    return case


class SyntheticPoolDataset(Dataset):
    """A MONAI :class:`~monai.data.Dataset` over a pool folder; item = ``transform(load_case(entry))``.

    Items are dicts ``{"id", "image" (C, X, Y, Z) float32, "label"? (1, X, Y, Z) uint8, "boxes"?,
    "box_labels"?}`` with the metadata saved with the pool (``meta["synthetic"]`` is True).
    For caching, pass :func:`pool_datalist` to ``CacheDataset``/``PersistentDataset`` with a loading
    transform instead.
    """

    def __init__(self, folder: str | Path, transform: Callable | None = None) -> None:
        self.folder = Path(folder)
        super().__init__(data=pool_datalist(folder), transform=transform)

    def _transform(self, index: int) -> Any:
        case = load_case(self.data[index])
        return apply_transform(self.transform, case) if self.transform is not None else case
