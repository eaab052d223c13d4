"""Downstream utility of synthetic data: train a segmenter on it, test on real scans (TSTR Dice).

FID says whether synthetic scans *look* real; this module asks whether they are *useful*. A small
MONAI ``UNet`` (3D, 4 classes: 0 background, 1 CSF, 2 GM, 3 WM) is trained for a fixed number of
steps on image/label pairs, then Dice per class (MONAI ``DiceMetric``, background excluded) is
measured on held-out **real** subjects:

- :func:`downstream_dice`: one training set → Dice on one real test set;
- :func:`train_on_synthetic_test_on_real`: the TSTR table: train on real (the baseline), on
  synthetic, on real + synthetic, same steps, same seed, same test subjects;
  :func:`tstr_holdout` does the same on one labelled real set, half of it held out
  (``medgen evaluate --downstream``);
- :func:`synthetic_pairs`: image/label pairs from a label-conditioned GAN (SPADE, ``gan.label_classes``):
  a real label map deformed by the cohort deformation, rendered by the GAN on the model's grid and
  brought back to the label's grid, so the pair stays exactly aligned;
- :func:`train_segmenter` / :func:`dice_per_class`: the training loop and the evaluation on their
  own (``benchmarks/augment.py`` uses them with augmentation pipelines).

The numbers are only comparable between rows of one table (same steps, seed, crop and test set): a
briefly trained UNet measures the *relative* utility of training sets, not a state-of-the-art Dice.

>>> table = train_on_synthetic_test_on_real(synthetic, real_train, real_test, steps=150)  # doctest: +SKIP
>>> [(r["train on"], round(r["mean"], 3)) for r in table["rows"]]                          # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
import torch
from monai.data import DataLoader, Dataset
from monai.inferers import sliding_window_inference
from monai.losses import DiceCELoss
from monai.metrics import DiceMetric
from monai.networks.nets import UNet
from monai.transforms import (
    Compose,
    EnsureTyped,
    NormalizeIntensityd,
    RandSpatialCropd,
    Spacing,
    SpatialPadd,
)

from medgen.augment.synthetic_pair import synthetic_pairs  # noqa: F401  (part of this module's TSTR API)
from medgen.errors import DataError
from medgen.io.meta import affine_of, spacing_from_affine
from medgen.seeding import seeded
from medgen.training.loop import Phase, fit

KEYS = ["image", "label"]
ROI = (48, 48, 48)
CLASSES = ("CSF", "GM", "WM")
NUM_CLASSES = len(CLASSES) + 1


def segmentation_pipeline(augment: Sequence[Callable] = (), roi: Sequence[int] = ROI) -> Compose:
    """Training transforms: ``augment`` (on data units), then z-score the image and take a random ``roi`` crop.

    Volumes smaller than ``roi`` are zero-padded first, so every crop has the same shape.
    """
    return Compose([EnsureTyped(KEYS, track_meta=False), *augment, NormalizeIntensityd("image", nonzero=False),
                    SpatialPadd(KEYS, spatial_size=list(roi)),
                    RandSpatialCropd(KEYS, roi_size=list(roi), random_size=False)])


def train_segmenter(
    items: Sequence[dict[str, Any]], *, steps: int = 150, seed: int = 0, roi: Sequence[int] = ROI,
    augment: Sequence[Callable] = (), device: str | torch.device = "cpu", batch_size: int = 2, lr: float = 3e-3,
) -> UNet:
    """Train a small 3D UNet (4 classes) on ``items`` for ``steps`` optimizer steps; deterministic by ``seed``.

    Args:
        items: ``[{"image": (1, X, Y, Z) scan, "label": (1, X, Y, Z) integer 0-3}, ...]``; any intensity
            units (each image is z-scored whole, then cropped).
        roi: random crop size (voxels) the network trains on.
        augment: MONAI dictionary transforms applied before normalisation and cropping.

    Returns:
        The network, in eval mode, on ``device``.
    """
    if not items:
        raise DataError("downstream segmentation: no training items")
    missing = [i for i, it in enumerate(items) if it.get("label") is None]
    if missing:
        raise DataError(f"downstream segmentation: training item {missing[0]} has no 'label'")
    # Seeds the initial weights, the shuffle and (through MONAI's DataLoader) the transforms; the
    # caller's random state is restored afterwards.
    with seeded(seed, device):
        net = UNet(3, 1, NUM_CLASSES, channels=(8, 16, 32), strides=(2, 2), num_res_units=1).to(device)
        loss_fn = DiceCELoss(to_onehot_y=True, softmax=True)
        loader = DataLoader(Dataset(list(items), segmentation_pipeline(augment, roi)), batch_size=batch_size,
                            shuffle=True, num_workers=0)
        batches = _endless(loader)

        def loss_at(step: int) -> torch.Tensor:
            batch = next(batches)
            return loss_fn(net(batch["image"].to(device)), batch["label"].long().to(device))

        fit([Phase(net, loss_at, lr=lr)], steps=steps, device=device)
    return net.eval()


def _endless(loader: DataLoader) -> Iterator[dict]:
    """Batches of ``loader``, epoch after epoch (each epoch reshuffled)."""
    while True:
        yield from loader


@torch.no_grad()
def dice_per_class(
    net: torch.nn.Module, items: Sequence[dict[str, Any]], *, roi: Sequence[int] = ROI,
    device: str | torch.device = "cpu",
) -> np.ndarray:
    """Dice ``(3,)`` (CSF, GM, WM; in [0, 1]) of ``net`` on ``items``, pooled over subjects (mean per class).

    Each image is z-scored and segmented whole by sliding windows of ``roi`` (25 % overlap).
    """
    if not items:
        raise DataError("downstream segmentation: no test items")
    norm = Compose([EnsureTyped(KEYS, track_meta=False), NormalizeIntensityd("image")])
    metric = DiceMetric(include_background=False, reduction="mean_batch")
    for item in items:
        d = norm({k: item[k] for k in KEYS})
        logits = sliding_window_inference(d["image"][None].to(device), list(roi), 4, net, overlap=0.25)
        pred = torch.nn.functional.one_hot(logits.argmax(1).cpu(), NUM_CLASSES).movedim(-1, 1)
        ref = torch.nn.functional.one_hot(d["label"][None, 0].long().clamp(0, NUM_CLASSES - 1),
                                          NUM_CLASSES).movedim(-1, 1)
        metric(pred, ref)
    return metric.aggregate().cpu().numpy()


def downstream_dice(
    train_items: Sequence[dict[str, Any]], test_items: Sequence[dict[str, Any]], *, steps: int = 150,
    seed: int = 0, roi: Sequence[int] = ROI, device: str | torch.device = "cpu", augment: Sequence[Callable] = (),
) -> dict[str, Any]:
    """Train on ``train_items`` (:func:`train_segmenter`), Dice on ``test_items`` (:func:`dice_per_class`).

    Returns:
        ``{"CSF", "GM", "WM", "mean"}`` Dice in [0, 1], and ``n_train``, ``n_test``, ``steps``, ``seed``.
    """
    net = train_segmenter(train_items, steps=steps, seed=seed, roi=roi, augment=augment, device=device)
    dice = dice_per_class(net, test_items, roi=roi, device=device)
    return {**{name: float(v) for name, v in zip(CLASSES, dice)}, "mean": float(np.nanmean(dice)),
            "n_train": len(train_items), "n_test": len(test_items), "steps": steps, "seed": seed}


def train_on_synthetic_test_on_real(
    synthetic_items: Sequence[dict[str, Any]], real_train_items: Sequence[dict[str, Any]],
    real_test_items: Sequence[dict[str, Any]], *, steps: int = 150, seed: int = 0, roi: Sequence[int] = ROI,
    device: str | torch.device = "cpu", mixed: bool = True,
) -> dict[str, Any]:
    """The TSTR table: Dice on ``real_test_items`` after training on real, synthetic, and real + synthetic.

    Every row trains the same network for the same ``steps`` with the same ``seed``. Synthetic items on
    another voxel spacing than the real test scans (e.g. a GAN trained at 6 mm) are resampled to it
    first (image linear, label nearest). The real test subjects must be neither the training subjects
    nor the ones whose label maps conditioned the synthetic images.

    Args:
        synthetic_items, real_train_items, real_test_items: ``[{"image": (1, X, Y, Z), "label": (1, X, Y, Z)
            0-3, ...}]``; ``real_train_items`` may be empty (no baseline, no mixed row).
        mixed: add the real + synthetic row.

    Returns:
        ``{"rows": [{"train on", "n_train", "CSF", "GM", "WM", "mean", "vs real"}, ...], "n_test", "steps",
        "seed", "roi"}``; Dice in [0, 1]; ``vs real`` is the row's mean Dice over the real baseline's.
    """
    if not real_test_items:
        raise DataError("TSTR: no real test items")
    spacing = spacing_from_affine(affine_of(real_test_items[0]["image"]))
    synthetic = [resample_item(it, spacing) for it in synthetic_items]
    sets = {"real": list(real_train_items), "synthetic": synthetic}
    if mixed and real_train_items:
        sets["real + synthetic"] = list(real_train_items) + synthetic
    rows = []
    for name, items in sets.items():
        if not items:
            continue
        r = downstream_dice(items, real_test_items, steps=steps, seed=seed, roi=roi, device=device)
        rows.append({"train on": name, "n_train": r["n_train"], **{c: r[c] for c in CLASSES}, "mean": r["mean"]})
    base = next((r["mean"] for r in rows if r["train on"] == "real"), None)
    for r in rows:
        r["vs real"] = r["mean"] / base if base else float("nan")
    return {"rows": rows, "n_test": len(real_test_items), "steps": steps, "seed": seed, "roi": list(roi)}


def tstr_holdout(
    synthetic_items: Sequence[dict[str, Any]], real_items: Sequence[dict[str, Any]], *, n_test: int | None = None,
    steps: int = 150, seed: int = 0, roi: Sequence[int] = ROI, device: str | torch.device = "cpu",
) -> dict[str, Any]:
    """:func:`train_on_synthetic_test_on_real` with the real items split by :func:`holdout_split`.

    What ``medgen evaluate --downstream`` runs. Adds ``"test_subjects"`` (the held-out real ids).

    Raises:
        DataError: an item without a label map, or fewer than 2 real items.
    """
    check_tstr_inputs(synthetic_items, real_items)
    real_train, real_test = holdout_split(real_items, n_test)
    out = train_on_synthetic_test_on_real(synthetic_items, real_train, real_test, steps=steps, seed=seed, roi=roi,
                                          device=device)
    out["test_subjects"] = [str(it.get("subject_id", "")) for it in real_test]
    return out


def check_tstr_inputs(synthetic_items: Sequence[dict[str, Any]], real_items: Sequence[dict[str, Any]]) -> None:
    """Raise :class:`~medgen.errors.DataError` (one line) unless every item has a label and there are 2+ real items.

    Cheap: callers run it before any expensive metric.
    """
    for kind, items in (("synthetic", synthetic_items), ("real", real_items)):
        unlabelled = [str(it.get("subject_id", i)) for i, it in enumerate(items) if it.get("label") is None]
        if unlabelled or not items:
            raise DataError(f"downstream Dice needs {kind} scans with label maps (layout of 'medgen data export': "
                            f"images/ + labels/); none for '{unlabelled[0] if unlabelled else kind}'")
    holdout_split(real_items)


def holdout_split(
    items: Sequence[dict[str, Any]], n_test: int | None = None
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """``(train, test)``: the last ``n_test`` items (default half, at least 1) by ``subject_id`` are held out."""
    ordered = sorted(items, key=lambda it: str(it.get("subject_id", "")))
    if len(ordered) < 2:
        raise DataError(f"TSTR needs at least 2 labelled real scans (1 to train, 1 to test), got {len(ordered)}")
    n_test = max(1, len(ordered) // 2) if n_test is None else n_test
    if not 1 <= n_test < len(ordered):
        raise DataError(f"TSTR: n_test={n_test} must be between 1 and {len(ordered) - 1}")
    return ordered[:-n_test], ordered[-n_test:]


def resample_item(item: dict[str, Any], spacing: Sequence[float], tol: float = 0.01) -> dict[str, Any]:
    """``item`` with image (linear) and label (nearest) resampled to ``spacing`` (mm) unless already within ``tol``."""
    own = spacing_from_affine(affine_of(item["image"]))
    if np.allclose(own, spacing, rtol=tol):
        return item
    out = dict(item)
    out["image"] = Spacing(pixdim=list(spacing), mode="bilinear")(item["image"])
    out["label"] = Spacing(pixdim=list(spacing), mode="nearest")(item["label"])
    return out


