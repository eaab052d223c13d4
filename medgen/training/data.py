"""Training data: built-in cohort or a folder → normalised, size-fitted tensors in a CacheDataset.

Each item is a dict of plain tensors:

- ``"image"``: ``(C, *size)`` float32 in [-1, 1] (see :class:`~medgen.models.normalization.Normalization`)
- ``"label"``: ``(K, *size)`` one-hot tissue map, when ``data.condition == "labels"``
- ``"cond"``: ``(cond_dim,)`` condition vector, for ``contrast`` / ``tissue_fractions`` conditions

The first ``val_subjects`` subjects are held out for validation. ``reference`` (affine, spacing and
modality of the fitted training volumes) is stored with the model so samples land in the same space.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from monai.data import CacheDataset, MetaTensor
from monai.data import DataLoader as MonaiDataLoader
from torch.utils.data import DistributedSampler

from medgen.errors import DataError
from medgen.io.meta import affine_of, spacing_from_affine
from medgen.models.normalization import Normalization, fit_percentile
from medgen.models.shapes import fit
from medgen.training.config import RunConfig


@dataclass
class PreparedData:
    train: CacheDataset
    val: list[dict[str, torch.Tensor]]
    normalization: Normalization
    reference: dict[str, Any]
    cond_dim: int


def cond_dim(cfg: RunConfig) -> int:
    """Length of the condition vector the data give (0 when unconditional or label-conditioned)."""
    cond = cfg.data.condition
    if cond == "contrast":
        return len(cfg.data.contrasts)
    if cond == "tissue_fractions":
        return cfg.data.label_classes - 1
    return 0


def load_subjects(cfg: RunConfig) -> list[dict[str, Any]]:
    """Raw subjects ``{"image": (C, X, Y, Z) MetaTensor in data units, "label"?, "cond"?}``."""
    d = cfg.data
    if d.source == "ct":
        subjects = [dict(s) for s in _data_api("ct_cohort")(d.n_subjects, seed=d.seed)]
        for s in subjects:
            s["units"] = "HU"
        return subjects
    if d.source == "folder":
        if not d.folder:
            raise DataError("data.source is 'folder' but no folder was given (set data.folder or pass --data DIR)")
        subjects = [dict(s) for s in _data_api("load_folder")(d.folder, load=True)]
        if not subjects:
            raise DataError(f"{d.folder}: no scans found")
        return subjects
    per_contrast = [_brain_cohort(d.n_subjects, d.resolution, d.seed, c) for c in d.contrasts]
    if d.contrast_mode == "channels" or len(d.contrasts) == 1:
        subjects = []
        for parts in zip(*per_contrast):
            image = torch.cat([p["image"] for p in parts], dim=0) if len(parts) > 1 else parts[0]["image"]
            subjects.append({"image": image, "label": parts[0].get("label"), "contrast": 0})
        return subjects
    return [{"image": s["image"], "label": s.get("label"), "contrast": i}
            for i, subs in enumerate(per_contrast) for s in subs]


@functools.lru_cache(maxsize=8)
def _cached_brain_cohort(n: int, resolution: int, seed: int, contrast: str) -> tuple:
    return tuple(_data_api("brain_cohort")(n, resolution=resolution, seed=seed, contrast=contrast))


def _brain_cohort(n: int, resolution: int, seed: int, contrast: str) -> list[dict]:
    """The built-in cohort, simulated once per process (tests and resumed runs reuse it)."""
    return [dict(s) for s in _cached_brain_cohort(n, resolution, seed, contrast)]


def _data_api(name: str):
    """``medgen.data.<name>`` (the built-in data and folder loader)."""
    import importlib

    import medgen.data as mdata

    if hasattr(mdata, name):
        return getattr(mdata, name)
    for module in ("cohort", "ct", "folder"):
        try:
            sub = importlib.import_module(f"medgen.data.{module}")
        except ImportError:
            continue
        if hasattr(sub, name):
            return getattr(sub, name)
    raise DataError(f"medgen.data.{name} is not available in this installation")


def prepare_data(cfg: RunConfig, normalization: Normalization | None = None) -> PreparedData:
    """Load, normalise, fit to ``model.size`` and cache the training set; hold out validation.

    ``normalization`` (e.g. from a checkpoint) is reused as is; otherwise it is fitted on the
    training subjects (percentiles for MR, ``hu_window`` for CT).
    """
    d, m = cfg.data, cfg.model
    subjects = load_subjects(cfg)
    if len(subjects) <= d.val_subjects:
        raise DataError(f"data: {len(subjects)} subjects is not more than data.val_subjects={d.val_subjects}")
    channels = subjects[0]["image"].shape[0]
    if channels != m.in_channels:
        raise DataError(f"data gives {channels} channel(s) but model.in_channels is {m.in_channels}")
    if d.downsample > 1:
        subjects = [_downsample(s, d.downsample) for s in subjects]
    val_raw, train_raw = subjects[: d.val_subjects], subjects[d.val_subjects:]
    ct = d.source == "ct" or any(s.get("units") == "HU" for s in subjects)
    if normalization is None:
        if ct:
            normalization = Normalization("window", float(d.hu_window[0]), float(d.hu_window[1]), "HU")
        else:
            normalization = fit_percentile([s["image"] for s in train_raw], *d.percentiles)
    items = [_item(s, cfg, normalization) for s in train_raw]
    val = [_item(s, cfg, normalization) for s in val_raw]
    items = [x for group in items for x in group]
    val = [x for group in val for x in group]
    first = train_raw[0]["image"]
    fitted = fit(first, _spatial(cfg, first))
    affine = affine_of(fitted)
    reference = {
        "affine": affine.tolist(), "spacing": list(spacing_from_affine(affine)), "shape": list(m.size),
        "modality": "CT" if ct else str(getattr(first, "meta", {}).get("modality", "MR") or "MR"),
        "units": "HU" if ct else "",
    }
    train = CacheDataset(items, transform=None, cache_rate=1.0, num_workers=0, progress=False)
    return PreparedData(train, val, normalization, reference, cond_dim(cfg))


def make_loader(
    data: PreparedData, cfg: RunConfig, rank: int, world: int
) -> tuple[MonaiDataLoader, DistributedSampler]:
    """A DataLoader whose order depends only on (seed, epoch): resumable and DDP-sharded."""
    sampler = DistributedSampler(data.train, num_replicas=world, rank=rank, shuffle=True, seed=cfg.train.seed)
    # A private generator keeps the DataLoader from drawing on the global RNG (exact resume).
    loader = MonaiDataLoader(data.train, batch_size=cfg.train.batch_size, sampler=sampler, num_workers=0,
                             generator=torch.Generator().manual_seed(cfg.train.seed))
    return loader, sampler


def _downsample(subject: dict[str, Any], factor: int) -> dict[str, Any]:
    """Resample image (linear) and label (nearest) to ``factor`` times larger voxels; affine follows."""
    from monai.transforms import Spacing

    image = subject["image"]
    pixdim = [float(s) * factor for s in image.meta.get("spacing", (1.0, 1.0, 1.0))]
    out = dict(subject)
    out["image"] = Spacing(pixdim=pixdim, mode="bilinear")(image)
    if subject.get("label") is not None:
        out["label"] = Spacing(pixdim=pixdim, mode="nearest")(subject["label"])
    return out


def _spatial(cfg: RunConfig, image: torch.Tensor) -> list[int]:
    """Fit size of a raw volume: the model size, or (2D) the model's in-plane size + all slices."""
    if cfg.model.spatial_dims == 2:
        return [*cfg.model.size, image.shape[-1]]
    return list(cfg.model.size)


def _item(subject: dict[str, Any], cfg: RunConfig, norm: Normalization) -> list[dict[str, torch.Tensor]]:
    """One subject → one item (3D) or ``data.slices`` central axial slices (2D)."""
    d = cfg.data
    image = norm.to_model(torch.as_tensor(subject["image"]).float())
    size = _spatial(cfg, image)
    out: dict[str, torch.Tensor] = {"image": torch.as_tensor(fit(image, size, pad_value=-1.0)).float()}
    label = subject.get("label")
    if d.condition in ("labels", "tissue_fractions"):
        if label is None:
            raise DataError("data.condition needs label maps, but the data have none")
        lab = torch.as_tensor(fit(torch.as_tensor(label).float(), size, pad_value=0.0)).round().long()[0]
        onehot = torch.nn.functional.one_hot(lab.clamp(0, d.label_classes - 1), d.label_classes)
        onehot = onehot.movedim(-1, 0).float()
        if d.condition == "labels":
            out["label"] = onehot
        else:
            fractions = onehot[1:].flatten(1).sum(1)
            out["cond"] = fractions / fractions.sum().clamp_min(1.0)
    if d.condition == "contrast":
        out["cond"] = torch.nn.functional.one_hot(torch.tensor(subject.get("contrast", 0)), len(d.contrasts)).float()
    # Plain tensors: scan metadata (provenance, boxes) differs between subjects and cannot be collated.
    out = {k: (v.as_tensor() if isinstance(v, MetaTensor) else v).contiguous() for k, v in out.items()}
    if cfg.model.spatial_dims == 3:
        return [out]
    depth = out["image"].shape[-1]
    centre = depth // 2
    picks = np.unique(np.clip(centre + np.arange(d.slices) - d.slices // 2, 0, depth - 1))
    return [{k: (v[..., int(z)] if v.ndim == out["image"].ndim else v) for k, v in out.items()} for z in picks]


def random_patches(batch: dict[str, torch.Tensor], patch: list[int], generator: torch.Generator) -> dict:
    """Crop one random patch (same place in every key) from each sample of ``batch``."""
    x = batch["image"]
    spatial = x.shape[2:]
    starts = [int(torch.randint(0, max(1, s - p + 1), (1,), generator=generator)) for s, p in zip(spatial, patch)]
    sl = tuple(slice(s, s + p) for s, p in zip(starts, patch))
    return {k: (v[(slice(None), slice(None), *sl)] if v.ndim == x.ndim else v) for k, v in batch.items()}
