"""Shared fixtures: real data from the built-in MNI152 template, small enough for fast tests."""

from __future__ import annotations

import copy
import os
from pathlib import Path

import nibabel as nib
import nilearn
import numpy as np
import pytest
import torch

from medgen.io.meta import make_scan

MNI_DIR = Path(os.path.dirname(nilearn.__file__)) / "datasets" / "data"
MNI_T1 = MNI_DIR / "mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz"


@pytest.fixture(scope="session")
def mni_t1_path() -> Path:
    """Path of the real MNI152 2009 T1 template (1 mm) installed by nilearn."""
    return MNI_T1


@pytest.fixture(scope="session")
def mni_block() -> torch.Tensor:
    """A real 32x28x24 block of the MNI152 T1 (every 2nd voxel around the centre), RAS affine."""
    img = nib.load(str(MNI_T1))
    data = np.asarray(img.dataobj, dtype=np.float32)
    c = np.array(data.shape) // 2
    block = data[c[0] - 32 : c[0] + 32 : 2, c[1] - 28 : c[1] + 28 : 2, c[2] - 24 : c[2] + 24 : 2]
    affine = img.affine.copy()
    affine[:3, :3] *= 2
    affine[:3, 3] = img.affine[:3, :3] @ (c - [32, 28, 24]) + img.affine[:3, 3]
    return make_scan(block[None], affine, modality="MR")


def oblique_affine(degrees: float = 20.0, flips=(-1, 1, 1), spacing=(1.2, 0.9, 2.5)) -> np.ndarray:
    """A voxel→RAS affine rotated about two axes, with axis flips and anisotropic spacing."""
    t = np.deg2rad(degrees)
    rz = np.array([[np.cos(t), -np.sin(t), 0], [np.sin(t), np.cos(t), 0], [0, 0, 1]])
    rx = np.array([[1, 0, 0], [0, np.cos(t / 2), -np.sin(t / 2)], [0, np.sin(t / 2), np.cos(t / 2)]])
    affine = np.eye(4)
    affine[:3, :3] = rz @ rx @ np.diag(np.asarray(flips, float) * np.asarray(spacing, float))
    affine[:3, 3] = [12.5, -30.0, 41.0]
    return affine


TINY_NETS = {
    "vae": {"vae": {"channels": [8, 16], "latent_channels": 2, "norm_num_groups": 4}},
    "gan": {"gan": {"latent_dim": 16, "channels": [16, 8, 8], "disc_channels": 8, "disc_layers": 2}},
    "diffusion": {"diffusion": {"channels": [8, 16], "attention": [False, False], "norm_num_groups": 4}},
}


def tiny_run(family: str = "diffusion", **sections) -> dict:
    """A run config (dict) small enough for a test: 16^3 crops of the 3 mm brain cohort at 6 mm, 3 steps."""
    cfg = {
        "name": f"tiny-{family}",
        "model": {"family": family, "size": [16, 16, 16], **TINY_NETS["diffusion" if family == "ldm" else family]},
        "data": {"source": "brain", "n_subjects": 3, "val_subjects": 1, "downsample": 2},
        "train": {"steps": 3, "batch_size": 2, "val_every": 0, "checkpoint_every": 0, "lr_schedule": "cosine",
                  "lr": 1e-3},
    }
    cfg = copy.deepcopy(cfg)
    for key, value in sections.items():
        cfg[key] = {**cfg.get(key, {}), **copy.deepcopy(value)}
    return cfg


@pytest.fixture
def tiny_config():
    """Factory of tiny run-config dicts: ``tiny_config("gan", train={"steps": 2})``."""
    return tiny_run
