"""medgen transforms inside MONAI: Compose, CacheDataset/PersistentDataset, DataLoader workers, pickling."""

from __future__ import annotations

import pickle

import torch
from monai.data import CacheDataset, DataLoader, Dataset, PersistentDataset
from monai.transforms import Compose, EnsureTyped, RandFlipd, ScaleIntensityd
from monai.utils import set_determinism

from medgen.augment import RandCTArtifactsd, RandDeformd, RandMRArtifactsd

NOISY = dict(bias_prob=0.0, motion_prob=0.0, ghosting_prob=0.0, spike_prob=0.0, gibbs_prob=0.0,
             low_resolution_prob=0.0, rician_prob=1.0)


def _pipeline() -> Compose:
    """Deterministic preprocessing, then medgen's random transform (the cache must stop before it)."""
    return Compose([EnsureTyped(keys=["image", "label"]), ScaleIntensityd(keys="image"),
                    RandMRArtifactsd(keys="image", **NOISY)])


def _small(subject):
    return {"image": subject["image"][:, ::2, ::2, ::2].clone(), "label": subject["label"][:, ::2, ::2, ::2].clone()}


def test_cache_keeps_only_the_deterministic_prefix_so_medgen_draws_stay_fresh(subject):
    pipeline = _pipeline()
    assert pipeline.get_index_of_first(lambda t: hasattr(t, "set_random_state")) == 2
    ds = CacheDataset([_small(subject)], transform=pipeline, cache_rate=1.0, num_workers=0, progress=False)
    cached = ds._cache[0]["image"]
    assert not cached.applied_operations or all(op["class"] != "RandMRArtifactsd" for op in cached.applied_operations)
    first, second = ds[0]["image"], ds[0]["image"]
    assert not torch.equal(first, second)  # a new draw per access, never frozen into the cache
    assert torch.equal(ds._cache[0]["image"], cached)  # and the cache is untouched


def test_persistent_dataset_does_not_store_the_random_part(subject, tmp_path):
    ds = PersistentDataset([_small(subject)], transform=_pipeline(), cache_dir=tmp_path)
    assert not torch.equal(ds[0]["image"], ds[0]["image"])


def _epoch(data, seed: int, workers: int) -> list[torch.Tensor]:
    set_determinism(seed=seed)
    ds = Dataset(data, transform=_pipeline())
    loader = DataLoader(ds, batch_size=1, num_workers=workers, shuffle=False)
    out = [batch["image"][0].as_tensor().clone() for batch in loader]
    set_determinism(seed=None)
    return out


def test_workers_draw_differently_yet_the_same_seed_gives_the_same_run(subject):
    data = [_small(subject) for _ in range(4)]  # four identical cases: any difference is the augmentation
    run_a = _epoch(data, seed=7, workers=2)
    run_b = _epoch(data, seed=7, workers=2)
    run_c = _epoch(data, seed=8, workers=2)
    assert all(torch.equal(a, b) for a, b in zip(run_a, run_b))
    # items 0 and 1 go to different workers (and 2, 3 follow them): all four draws differ
    assert all(not torch.equal(run_a[i], run_a[j]) for i in range(4) for j in range(i + 1, 4))
    assert any(not torch.equal(a, c) for a, c in zip(run_a, run_c))


def test_compose_set_random_state_reaches_medgen_and_monai_transforms_alike(subject):
    def make():
        return Compose([RandFlipd(keys=["image", "label"], prob=0.5, spatial_axis=0),
                        RandDeformd(["image", "label"], mode=["bilinear", "nearest"], prob=0.7),
                        RandMRArtifactsd(keys="image", **NOISY)])
    case = _small(subject)
    a = make().set_random_state(seed=11)(dict(case))
    b = make().set_random_state(seed=11)(dict(case))
    assert torch.equal(a["image"], b["image"]) and torch.equal(a["label"], b["label"])
    classes = [op["class"] for op in a["image"].applied_operations]
    assert classes[-2:] == ["RandDeformd", "RandMRArtifactsd"]


def test_transforms_pickle_and_give_the_same_draw_after_unpickling(subject):
    pipeline = Compose([RandDeformd(["image", "label"], mode=["bilinear", "nearest"]),
                        RandMRArtifactsd(keys="image"), RandCTArtifactsd(keys="ct", allow_missing_keys=True)])
    pipeline.set_random_state(seed=3)
    clone = pickle.loads(pickle.dumps(pipeline))
    case = _small(subject)
    assert torch.equal(pipeline(dict(case))["image"], clone(dict(case))["image"])
