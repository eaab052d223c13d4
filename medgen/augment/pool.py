"""Synthetic pools: generate N image/label(/box) cases to disk once, then serve them like real data.

Generating on the fly (GAN or diffusion per training step) would make the data loader the
bottleneck; a pool is written once and read back at file speed. The layout is ``medgen data
export``'s, so :func:`medgen.data.load_folder` reads a pool like any exported dataset::

    pool/
      images/<id>.nii.gz  (C, X, Y, Z) float32, provenance marked synthetic
      labels/<id>.nii.gz  (1, X, Y, Z) uint8 label map (when the generator gives one)
      boxes/<id>.json     {"boxes": [[...]], "box_labels": [...]} (when it gives boxes)
      dataset.json        {"name", "synthetic": true, "generator", "seed", "num_cases",
                           "cases": [{"id", "image", "label"?, "seed"}]}   (pool provenance)

Boxes are MONAI ``StandardMode`` ``(N, 6)`` in voxel coordinates of the image. The pool is written
atomically (a half-written pool never exists under its name).

:func:`write_model_pool` (``medgen synthesize MODEL --pool``) fills a pool from a model folder: samples
of an unconditional model, or image/label pairs of a label-conditioned GAN rendered from deformed
real label maps (:func:`medgen.augment.synthetic_pair.synthetic_pairs`).

>>> write_pool("pool/", lambda seed: my_generator(seed), 200, seed=0)      # doctest: +SKIP
>>> write_model_pool("runs/spade/model", "pool/", 200, labels=brain_cohort(10))   # doctest: +SKIP
>>> ds = SyntheticPoolDataset("pool/", transform=train_transforms)          # doctest: +SKIP
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from monai.data import Dataset
from monai.transforms import apply_transform

from medgen.augment._lazy_model import LazyModel
from medgen.augment.synthetic_pair import synthetic_pairs
from medgen.data.folder import load_item, read_boxes
from medgen.errors import ConfigError, DataError, MedgenError, MedgenWarning
from medgen.io import mark, save_scan
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
                (tmp / "boxes").mkdir(exist_ok=True)
                boxes = {"boxes": torch.as_tensor(item["boxes"]).reshape(-1, 6).tolist(),
                         "box_labels": torch.as_tensor(item.get("box_labels", [])).reshape(-1).tolist()}
                (tmp / "boxes" / f"{case_id}.json").write_text(json.dumps(boxes))
            cases.append(entry)
            if progress:
                progress(i + 1, num_cases)
        index = {"name": name, "synthetic": True, "generator": generator_name, "seed": seed,
                 "num_cases": num_cases, "cases": cases}
        (tmp / POOL_INDEX).write_text(json.dumps(index, indent=1))
    return Path(folder)


def write_model_pool(
    model: str | Path,
    folder: str | Path,
    num_cases: int,
    *,
    labels: Sequence[Mapping[str, Any]] = (),
    seed: int = 0,
    strength: float = 0.5,
    sampler: str | None = None,
    steps: int | None = None,
    device: str = "auto",
    overwrite: bool = False,
    progress: Callable[[int, int], None] | None = None,
    lesions: int = 0,
    lesion_label: int | None = None,
    host_labels: Sequence[int] | None = None,
) -> Path:
    """Pre-generate a pool of ``num_cases`` cases from a model folder (``medgen train``'s ``RUN/model``).

    Args:
        model: the model folder. A label-conditioned GAN or diffusion model (``label_classes > 0``) renders
            image/label pairs: case ``i`` deforms the label map of ``labels[case_seed % len(labels)]``
            with the cohort deformation (``strength``) and renders an image for it, so every image has
            its exact label. Any other model writes image-only cases (its samples).
        labels: items with a ``"label"`` ``(1, X, Y, Z)`` integer MetaTensor (e.g. ``brain_cohort(10)``
            or ``load_folder(dir, load=True)``); required for a label-conditioned model.
        sampler, steps: diffusion sampling (default: the model's fast sampler).
        lesions: with a label-conditioned diffusion model, insert this many inpainted lesions
            (:class:`~medgen.augment.lesion.RandLesionInsertd`) into each *real* case of ``labels``
            (which then need ``image`` too) instead of rendering new pairs; labels and ``boxes`` /
            ``box_labels`` (class 0 added) follow. ``lesion_label``: its label value (default: the
            model's last class, the phantom's lesion); ``host_labels``: labels lesions may grow in
            (default: any foreground).
        seed, overwrite, progress: as :func:`write_pool`.

    Returns:
        The pool folder; its ``dataset.json`` names the model as the generator.
    """
    from medgen.synthesize import synthesize

    loaded = LazyModel(model, device).get()
    name = f"{loaded.name} ({Path(model)})"
    if lesions > 0:
        return _lesion_pool(model, folder, num_cases, labels, seed=seed, lesions=lesions, lesion_label=lesion_label,
                            host_labels=host_labels, steps=steps, device=device, overwrite=overwrite,
                            progress=progress)
    if loaded.config.label_classes:
        sources = [item for item in labels if item.get("label") is not None]
        if not sources:
            raise ConfigError(f"key 'labels': {model} is conditioned on label maps; give labelled cases to deform "
                              "(e.g. a folder written by 'medgen data export')")

        def generate(case: int) -> dict[str, Any]:
            item = sources[case % len(sources)]
            return synthetic_pairs(model, [item], seed=case, strength=strength, device=device)[0]
    else:
        def generate(case: int) -> dict[str, Any]:
            return {"image": synthesize(loaded, 1, seed=case, sampler=sampler, steps=steps)[0]}

    return write_pool(folder, generate, num_cases, seed=seed, name="model-pool", generator_name=name,
                      overwrite=overwrite, progress=progress)


def _lesion_pool(model, folder, num_cases, labels, *, seed, lesions, lesion_label, host_labels, steps, device,
                 overwrite, progress) -> Path:
    """Real labelled cases with ``lesions`` inpainted lesions each (see :func:`write_model_pool`)."""
    from medgen.augment.lesion import RandLesionInsertd
    from medgen.synthesize.inpaint import check_inpainting_model

    loaded = LazyModel(model, device).get()
    check_inpainting_model(loaded)
    if not loaded.config.label_classes:
        raise ConfigError(f"key 'lesions': {model} is not conditioned on label maps (diffusion.label_classes)")
    sources = [item for item in labels if item.get("label") is not None and item.get("image") is not None]
    if not sources:
        raise ConfigError("key 'labels': inserting lesions needs real cases with image and label (e.g. a folder "
                          "written by 'medgen data export --kind ct')")
    insert = RandLesionInsertd("image", "label", box_keys="boxes", label_keys="box_labels", box_class=0,
                               lesion_label=loaded.config.label_classes - 1 if lesion_label is None else lesion_label,
                               host_labels=host_labels, model=str(model), steps=steps, device=device)

    def generate(case: int) -> dict[str, Any]:
        item = sources[case % len(sources)]
        boxes = item.get("boxes")
        out = {"image": item["image"].clone(), "label": item["label"].clone(),
               "boxes": torch.zeros((0, 6)) if boxes is None else torch.as_tensor(boxes).clone(),
               "box_labels": torch.as_tensor(item.get("box_labels", torch.zeros(0, dtype=torch.long))).clone()}
        insert.set_random_state(case)
        for _ in range(lesions):
            out = insert(out)
        return out

    name = f"{loaded.name} ({Path(model)}): {lesions} inpainted lesion(s) per real case"
    return write_pool(folder, generate, num_cases, seed=seed, name="lesion-pool", generator_name=name,
                      overwrite=overwrite, progress=progress)


def pool_datalist(folder: str | Path) -> list[dict[str, Any]]:
    """The pool's cases, from its index, as a MONAI datalist: image/label paths, boxes as tensors.

    A case of the pool's index whose image or label file is missing is left out with a
    :class:`~medgen.errors.MedgenWarning` naming it (the rest of the pool stays usable).

    Raises:
        DataError: not a pool folder, an unreadable index, or no case left.
    """
    root = Path(folder)
    if not (root / POOL_INDEX).is_file():
        raise DataError(f"{root}: not a synthetic pool (missing {POOL_INDEX}); write one with write_pool")
    try:
        cases = json.loads((root / POOL_INDEX).read_text())["cases"]
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise DataError(f"{root / POOL_INDEX}: not a readable pool index ({type(err).__name__})") from None
    datalist = []
    for case in cases:
        entry = {key: case[key] for key in ("image", "label") if isinstance(case, dict) and key in case}
        files = {key: (root / rel).resolve() for key, rel in entry.items()}
        missing = [entry[key] for key, path in files.items()
                   if not path.is_relative_to(root.resolve()) or not path.is_file()]
        boxes = root / "boxes" / f"{case.get('id')}.json" if isinstance(case, dict) else None
        try:
            box_data = read_boxes(boxes) if boxes is not None and boxes.is_file() else {}
        except DataError as err:
            missing.append(f"{boxes.name} ({err})")
        if missing or "image" not in entry:
            warnings.warn(f"{root}: case {case.get('id') if isinstance(case, dict) else case}: "
                          f"{', '.join(missing) or 'no image'} is missing; skipped", MedgenWarning, stacklevel=2)
            continue
        datalist.append({**{key: str(path) for key, path in files.items()}, **box_data, "subject_id": case["id"]})
    if not datalist:
        raise DataError(f"{root}: no readable case left in this pool")
    return datalist


def load_case(entry: dict[str, Any]) -> dict[str, Any]:
    """Read one datalist entry: ``image`` float32 MetaTensor, ``label`` uint8, ``boxes`` float32 ``(N, 6)``."""
    return load_item(entry)


class SyntheticPoolDataset(Dataset):
    """A MONAI :class:`~monai.data.Dataset` over a pool folder; item = ``transform(load_case(entry))``.

    Items are dicts ``{"subject_id", "image" (C, X, Y, Z) float32, "label"? (1, X, Y, Z) uint8, "boxes"?,
    "box_labels"?}`` with the metadata saved with the pool (``meta["synthetic"]`` is True).
    With ``cache=True`` every case is read once, when the dataset is made, and served from memory
    (what MONAI's ``CacheDataset`` does for the deterministic loading step): the loop then runs at
    the rate of an in-memory dataset, at the cost of holding the pool in RAM. The transform (random
    augmentation) still runs on every access, on a copy, so cached cases never change.
    """

    def __init__(self, folder: str | Path, transform: Callable | None = None, *, cache: bool = False) -> None:
        self.folder = Path(folder)
        super().__init__(data=pool_datalist(folder), transform=transform)
        self._bad: set[int] = set()
        self._cached = None
        if cache:
            loaded = [(entry, _read_or_warn(entry)) for entry in self.data]
            self.data = [entry for entry, case in loaded if case is not None]
            self._cached = [case for _, case in loaded if case is not None]
            if not self.data:
                raise DataError(f"{self.folder}: no readable case left in this pool")

    def _transform(self, index: int) -> Any:
        if self._cached is not None:
            case = {k: v.clone() if isinstance(v, torch.Tensor) else v for k, v in self._cached[index].items()}
        else:
            case = self._read(index)
        return apply_transform(self.transform, case) if self.transform is not None else case

    def _read(self, index: int) -> dict[str, Any]:
        """Case ``index``, or (when its files cannot be read: warned once, then skipped) the next readable one."""
        n = len(self.data)
        for k in range(n):
            i = (index + k) % n
            if i in self._bad:
                continue
            case = _read_or_warn(self.data[i])
            if case is not None:
                return case
            self._bad.add(i)
        raise DataError(f"{self.folder}: no readable case left in this pool")


def _read_or_warn(entry: dict[str, Any]) -> dict[str, Any] | None:
    """:func:`load_case`, or None with a :class:`~medgen.errors.MedgenWarning` naming the unreadable file."""
    try:
        return load_case(entry)
    except MedgenError as err:
        warnings.warn(f"{err}; case skipped", MedgenWarning, stacklevel=3)
        return None
