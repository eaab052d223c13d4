"""A procedural abdominal CT phantom with lesions, their masks and bounding boxes.

Each phantom is drawn from its seed (:class:`PhantomParams`) in world millimetres, then voxelised, so
any ``shape``/``spacing`` gives the same anatomy:

- **Body**: an elliptic cylinder (~330 x 240 mm) of soft tissue (~40 HU) inside a subcutaneous fat
  layer (~-100 HU); air (-1000 HU) outside.
- **Organs**: lungs (~-850 HU) above a domed diaphragm, liver (~60 HU, patient right = +x in RAS),
  spleen (~50 HU, left), two kidneys (~35 HU, posterior), a vertebral column (cortical shell
  ~800 HU, cancellous core ~250 HU). Each organ's HU and size vary per phantom and carry a smooth
  +-5 HU texture.
- **Lesions**: ellipsoids (radius 5-20 mm, random orientation) inside the lungs (solid nodules,
  ~-50..60 HU), liver (hypo- or hyperdense by 25-60 HU), spleen and kidneys (cysts ~10 HU); lesions
  never touch each other nor the FOV border, so each has its own tight, whole box.
- **Acquisition**: a Gaussian PSF (sigma 0.4 voxel) and Gaussian noise (5-25 HU unless given).

Labels (``label``, uint8): 0 air, 1 soft tissue, 2 fat, 3 lung, 4 liver, 5 spleen, 6 kidney, 7 bone,
8 lesion (lesions painted over their host organ). ``lesion_mask`` (uint8) is an *instance* map: 0
background, ``k`` = lesion ``k``, the one in row ``k - 1`` of ``boxes``; ``lesion_mask > 0`` is the
binary lesion mask.

Boxes follow MONAI detection's convention (``monai.data.box_utils`` ``StandardMode``,
``"xyzxyz"``) in **voxel** (image) coordinates: ``[i0, j0, k0, i1, j1, k1]`` with ``i1`` exclusive
(``max index + 1``), as :func:`monai.apps.detection.transforms.box_ops.convert_mask_to_box` makes and
``monai.apps.detection`` transforms expect with ``box_ref_image_keys="image"``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
from monai.apps.detection.transforms.box_ops import convert_mask_to_box

from medgen.data.deform import gaussian_smooth, smooth_random_field
from medgen.errors import DataError
from medgen.io import make_scan, mark

LABELS = {"air": 0, "soft_tissue": 1, "fat": 2, "lung": 3, "liver": 4, "spleen": 5, "kidney": 6, "bone": 7,
          "lesion": 8}
BOX_MODE = "xyzxyz"
LESION_HOSTS = {"lung": 0.35, "liver": 0.4, "spleen": 0.1, "kidney": 0.15}


@dataclass(frozen=True)
class Lesion:
    organ: str
    centre_mm: tuple[float, float, float]
    radii_mm: tuple[float, float, float]
    rotation: tuple[tuple[float, ...], ...]  # 3x3 rotation, lesion axes → world
    hu: float


@dataclass(frozen=True)
class PhantomParams:
    """Everything random about one phantom (world mm, RAS, origin at the FOV centre)."""

    seed: int
    body: tuple[float, float]  # semi-axes x (lateral), y (antero-posterior)
    fat_mm: float
    diaphragm_mm: float  # z of the diaphragm dome top
    hu: dict[str, float]
    scale: dict[str, float]  # per-organ size factor
    offset: dict[str, tuple[float, float, float]]  # per-organ centre jitter (mm)
    noise_hu: float
    lesion_radius_mm: tuple[float, float]
    n_lesions: int
    texture_seed: int
    lesions: list[Lesion] = field(default_factory=list)

    @classmethod
    def draw(
        cls, seed: int, n_lesions: tuple[int, int] = (1, 5), noise: float | None = None,
        lesion_radius_mm: tuple[float, float] = (5.0, 20.0),
    ) -> PhantomParams:
        rng = np.random.default_rng(seed)
        organs = ("lung", "liver", "spleen", "kidney", "bone")
        hu = {"air": -1000.0, "soft_tissue": rng.uniform(30, 50), "fat": rng.uniform(-120, -80),
              "lung": rng.uniform(-880, -800), "liver": rng.uniform(50, 70), "spleen": rng.uniform(40, 55),
              "kidney": rng.uniform(28, 40), "bone": rng.uniform(650, 900), "marrow": rng.uniform(180, 300)}
        lo, hi = n_lesions
        if lo < 0 or hi < lo:
            raise DataError(f"n_lesions must be a range (min, max) with 0 <= min <= max, got {n_lesions}")
        return cls(
            seed=seed,
            body=(float(rng.uniform(150, 180)), float(rng.uniform(105, 130))),
            fat_mm=float(rng.uniform(15, 35)),
            diaphragm_mm=float(rng.uniform(0, 40)),
            hu={k: float(v) for k, v in hu.items()},
            scale={k: float(rng.uniform(0.85, 1.15)) for k in organs},
            offset={k: tuple(float(v) for v in rng.normal(0, 6, 3)) for k in organs},
            noise_hu=float(rng.uniform(5, 25)) if noise is None else float(noise),
            lesion_radius_mm=lesion_radius_mm,
            n_lesions=int(rng.integers(lo, hi + 1)),
            texture_seed=int(rng.integers(2**31)),
        )


def ct_phantom(
    seed: int,
    shape: tuple[int, int, int] = (64, 64, 48),
    spacing: tuple[float, float, float] = (6.0, 6.0, 6.0),
    n_lesions: tuple[int, int] = (1, 5),
    noise: float | None = None,
    *,
    lesion_radius_mm: tuple[float, float] = (5.0, 20.0),
    subject_id: str | None = None,
) -> dict[str, Any]:
    """One CT phantom, deterministic by ``seed``.

    Args:
        shape: voxels ``(X, Y, Z)``; spacing: voxel size in mm. The FOV is centred on the body; the
            default covers 384 x 384 x 288 mm (lower chest to pelvis).
        n_lesions: inclusive range of the number of lesions (fewer if they do not fit).
        noise: Gaussian noise sigma in HU; None draws 5-25 HU; 0 gives a noise-free phantom.
        lesion_radius_mm: range of lesion radii (the smallest is raised to cover >= 1 voxel).

    Returns:
        ``{"image", "label", "lesion_mask", "boxes", "box_labels", "subject_id"}``: ``image``
        MetaTensor ``(1, X, Y, Z)`` float32 in HU (modality "CT", units "HU", synthetic, lesion list in
        ``meta["lesions"]``); ``label`` and ``lesion_mask`` uint8 MetaTensors (see module docstring);
        ``boxes`` float32 tensor ``(N, 6)`` voxel ``xyzxyz`` (end exclusive); ``box_labels`` int64
        ``(N,)``, all 0 (one class: lesion).
    """
    params = PhantomParams.draw(seed, n_lesions, noise, lesion_radius_mm)
    spacing_a = np.asarray(spacing, dtype=np.float64)
    affine = np.diag([*spacing_a, 1.0])
    affine[:3, 3] = -(np.asarray(shape) - 1) / 2.0 * spacing_a
    xyz = _world_grid(shape, affine)
    label, hu = _organs(xyz, params)
    rng = np.random.default_rng([seed, 1])
    lesions, instances = _place_lesions(xyz, label, params, spacing_a, rng)
    texture = smooth_random_field(tuple(shape), 20.0 / float(spacing_a.mean()),
                                  torch.Generator().manual_seed(params.texture_seed), channels=1)[0].numpy()
    image = hu + 5.0 * texture * (label != LABELS["air"])
    for k, lesion in enumerate(lesions, start=1):
        image[instances == k] = lesion.hu + 5.0 * texture[instances == k]
    label[instances > 0] = LABELS["lesion"]
    image = gaussian_smooth(torch.as_tensor(image, dtype=torch.float32)[None], 0.4)
    if params.noise_hu > 0:
        gen = torch.Generator().manual_seed(params.texture_seed + 1)
        image = image + torch.randn(image.shape, generator=gen) * params.noise_hu
    image = image.clamp(-1024.0, 3071.0)
    boxes, box_labels = lesion_boxes(instances, len(lesions))
    sid = subject_id if subject_id is not None else f"ct-{seed}"
    meta = {"modality": "CT", "series_description": "medgen CT phantom", "subject_id": sid,
            "lesions": [asdict(les) for les in lesions]}
    record = {"shape": list(shape), "spacing_mm": list(spacing), "noise_hu": params.noise_hu,
              "n_lesions": len(lesions)}
    out = {
        "image": mark(make_scan(image, affine, units="HU", **meta), "simulate-ct-phantom", synthetic=True,
                      model="medgen.data.phantom", seed=seed, **record),
        "label": mark(make_scan(label[None], affine, dtype=torch.uint8, **meta), "simulate-ct-phantom-labels",
                      synthetic=True, model="medgen.data.phantom", seed=seed, **record),
        "lesion_mask": mark(make_scan(instances[None], affine, dtype=torch.uint8, **meta),
                            "simulate-ct-phantom-lesions", synthetic=True, model="medgen.data.phantom", seed=seed),
        "boxes": boxes,
        "box_labels": box_labels,
        "subject_id": sid,
    }
    return out


def ct_cohort(n: int, seed: int = 0, **kwargs: Any) -> list[dict[str, Any]]:
    """``n`` phantoms as a MONAI list of dicts; phantom ``i`` has seed ``subject_seed(seed, i)`` and
    id ``"sub-<i:03d>"``; ``kwargs`` go to :func:`ct_phantom`."""
    from medgen.data.cohort import subject_seed

    return [ct_phantom(subject_seed(seed, i), subject_id=f"sub-{i:03d}", **kwargs) for i in range(n)]


def lesion_boxes(instances: np.ndarray, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Tight voxel boxes ``(n, 6)`` float32 (``xyzxyz``, end exclusive) and labels ``(n,)`` int64 (0)
    of lesion instances ``1..n`` in ``instances`` ``(X, Y, Z)``, via MONAI's ``convert_mask_to_box``."""
    if n == 0:
        return torch.zeros((0, 6), dtype=torch.float32), torch.zeros((0,), dtype=torch.int64)
    per_box = np.stack([np.where(instances == k, 0, -1) for k in range(1, n + 1)]).astype(np.int16)
    boxes, labels = convert_mask_to_box(per_box, bg_label=-1, box_dtype=np.float32, label_dtype=np.int64)
    return torch.as_tensor(boxes), torch.as_tensor(labels)


def _world_grid(shape: tuple[int, int, int], affine: np.ndarray) -> np.ndarray:
    """World coordinates ``(3, X, Y, Z)`` in mm of every voxel centre."""
    ijk = np.stack(np.meshgrid(*[np.arange(n, dtype=np.float64) for n in shape], indexing="ij"))
    return np.einsum("ij,j...->i...", affine[:3, :3], ijk) + affine[:3, 3].reshape(3, 1, 1, 1)


def _ellipsoid(xyz: np.ndarray, centre, radii, rotation: np.ndarray | None = None) -> np.ndarray:
    d = xyz - np.asarray(centre, dtype=np.float64).reshape(3, 1, 1, 1)
    if rotation is not None:
        d = np.einsum("ji,j...->i...", rotation, d)  # world offsets → lesion axes
    return sum((d[i] / radii[i]) ** 2 for i in range(3)) <= 1.0


def _organs(xyz: np.ndarray, p: PhantomParams) -> tuple[np.ndarray, np.ndarray]:
    """Organ labels ``(X, Y, Z)`` uint8 and noise-free HU of phantom ``p``."""
    x, y, z = xyz
    a, b = p.body
    label = np.zeros(x.shape, dtype=np.uint8)
    body = (x / a) ** 2 + (y / b) ** 2 <= 1.0
    inner = (x / (a - p.fat_mm)) ** 2 + (y / (b - p.fat_mm)) ** 2 <= 1.0
    label[body] = LABELS["fat"]
    label[inner] = LABELS["soft_tissue"]
    s, o, zd = p.scale, p.offset, p.diaphragm_mm

    def organ(name, centre, radii):
        c = np.add(centre, o[name])
        return _ellipsoid(xyz, c, [r * s[name] for r in radii]) & inner

    dome = zd - 0.004 * (x**2 + (y + 0.1 * b) ** 2) * 0.5  # diaphragm height falls off laterally
    for side in (1, -1):
        lung = organ("lung", (side * 0.42 * a, -0.05 * b, zd + 110), (0.33 * a, 0.62 * b, 150)) & (z > dome)
        label[lung] = LABELS["lung"]
    label[organ("liver", (0.32 * a, 0.05 * b, zd - 55), (0.48 * a, 0.6 * b, 75)) & (z <= dome)] = LABELS["liver"]
    label[organ("spleen", (-0.55 * a, -0.25 * b, zd - 45), (0.2 * a, 0.32 * b, 50)) & (z <= dome)] = LABELS["spleen"]
    for side in (1, -1):
        kidney = organ("kidney", (side * 0.36 * a, -0.5 * b, zd - 130), (0.17 * a, 0.22 * b, 55))
        label[kidney] = LABELS["kidney"]
    spine_c = np.add((0.0, -0.62 * b), o["bone"][:2])
    r = np.hypot(x - spine_c[0], y - spine_c[1])
    radius = 20.0 * s["bone"]
    label[r <= radius] = LABELS["bone"]
    hu = np.full(x.shape, p.hu["air"])
    for name, value in LABELS.items():
        if name in p.hu:
            hu[label == value] = p.hu[name]
    core = (r <= radius - 4.0) & (label == LABELS["bone"])
    hu[core] = p.hu["marrow"]
    return label, hu


def _place_lesions(
    xyz: np.ndarray, label: np.ndarray, p: PhantomParams, spacing: np.ndarray, rng: np.random.Generator
) -> tuple[list[Lesion], np.ndarray]:
    """Draw up to ``p.n_lesions`` non-touching lesions inside their host organs; return them and the
    instance map ``(X, Y, Z)`` uint8."""
    instances = np.zeros(label.shape, dtype=np.uint8)
    occupied = np.zeros(label.shape, dtype=bool)
    hosts = list(LESION_HOSTS)
    weights = np.array([LESION_HOSTS[h] for h in hosts])
    r_min = max(p.lesion_radius_mm[0], 0.75 * float(spacing.max()))
    r_max = max(p.lesion_radius_mm[1], r_min)
    lesions: list[Lesion] = []
    for _ in range(20 * max(p.n_lesions, 1)):
        if len(lesions) == p.n_lesions:
            break
        organ = hosts[int(rng.choice(len(hosts), p=weights / weights.sum()))]
        candidates = np.argwhere(label == LABELS[organ])
        if len(candidates) == 0:
            continue
        ijk = candidates[int(rng.integers(len(candidates)))]
        centre = xyz[:, ijk[0], ijk[1], ijk[2]] + rng.uniform(-0.5, 0.5, 3) * spacing
        radius = math.exp(rng.uniform(math.log(r_min), math.log(r_max)))  # small lesions are common
        radii = radius * rng.uniform(0.8, 1.2, 3)
        rotation = _random_rotation(rng)
        inside = _ellipsoid(xyz, centre, radii, rotation)
        inside[tuple(ijk)] = True  # at least the centre voxel
        grown = inside | np.roll(inside, 1, 0) | np.roll(inside, -1, 0) | np.roll(inside, 1, 1) | \
            np.roll(inside, -1, 1) | np.roll(inside, 1, 2) | np.roll(inside, -1, 2)
        if (grown & occupied).any() or (label[inside] == LABELS["air"]).any() or _touches_border(inside):
            continue
        occupied |= grown
        instances[inside] = len(lesions) + 1
        lesions.append(Lesion(organ, tuple(float(v) for v in centre), tuple(float(v) for v in radii),
                              tuple(tuple(float(v) for v in row) for row in rotation), _lesion_hu(organ, p, rng)))
    return lesions, instances


def _touches_border(mask: np.ndarray) -> bool:
    """A lesion cut by the FOV would get a truncated box: keep lesions whole."""
    return bool(mask[0].any() or mask[-1].any() or mask[:, 0].any() or mask[:, -1].any()
                or mask[:, :, 0].any() or mask[:, :, -1].any())


def _lesion_hu(organ: str, p: PhantomParams, rng: np.random.Generator) -> float:
    if organ == "lung":
        return float(rng.uniform(-50, 60))
    if organ == "kidney":
        return float(rng.uniform(0, 15))  # simple cyst
    sign = -1.0 if rng.random() < 0.75 else 1.0  # most liver/spleen lesions are hypodense
    return float(p.hu[organ] + sign * rng.uniform(25, 60))


def _random_rotation(rng: np.random.Generator) -> np.ndarray:
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    q = q * np.sign(np.diag(r))
    if np.linalg.det(q) < 0:
        q[:, 0] = -q[:, 0]
    return q
