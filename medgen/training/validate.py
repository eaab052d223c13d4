"""Validation during training: a few samples or reconstructions, a metric, a PNG, and the model card."""

from __future__ import annotations

import datetime as _dt
from pathlib import Path

import numpy as np
import torch
from torch import nn

from medgen.io.meta import make_scan
from medgen.training.config import RunConfig
from medgen.training.data import PreparedData
from medgen.training.recipes import Recipe
from medgen.viz import save_montage


@torch.no_grad()
def validate(cfg: RunConfig, recipe: Recipe, net: nn.Module, data: PreparedData, step: int, out: Path,
             device: torch.device) -> dict[str, float]:
    """Preview outputs on held-out data; write ``out/samples/step_NNNNNN.png``; return metrics.

    VAE: ``recon_l1``, L1 reconstruction error on validation volumes. GAN/diffusion: ``mean_l1``,
    mean absolute difference between the average generated and the average validation volume. Both in
    model range units (the data's [low, high] mapped to [-1, 1]; 0 is perfect, 2 the most). Two
    samples cannot measure a distribution: use ``medgen.evaluate`` (feature MMD/FID) on a finished model.
    """
    was_training = net.training
    net.eval()
    try:
        shown = recipe.preview(net, data.val, device).float().cpu()
    finally:
        net.train(was_training)
    real = torch.stack([v["image"] for v in data.val[: 2]]).float()
    metrics: dict[str, float] = {}
    if cfg.model.family == "vae":
        n = real.shape[0]
        metrics["recon_l1"] = float((shown[n:] - real).abs().mean())
    elif shown.shape[1:] == real.shape[1:]:
        metrics["mean_l1"] = float((shown.mean(0) - real.mean(0)).abs().mean())
    _montage(shown, data, out / "samples" / f"step_{step:06d}.png", cfg.model.spatial_dims)
    return metrics


def _montage(volumes: torch.Tensor, data: PreparedData, path: Path, dims: int) -> None:
    affine = np.asarray(data.reference["affine"])
    scans = []
    for v in volumes:
        v = v if dims == 3 else v[..., None].repeat(1, 1, 1, 3)
        scans.append(make_scan(data.normalization.to_units(v), affine))
    save_montage(scans, path, titles=[f"sample {i}" for i in range(len(scans))], overwrite=True)


def card_text(cfg: RunConfig, step: int, last: dict, val: dict, seconds: float) -> str:
    """The model card (markdown): what the model is, the data it saw, how long it trained, metrics."""
    d, m = cfg.data, cfg.model
    data = (f"folder `{d.folder}`" if d.source == "folder" else
            f"built-in {'CT phantom' if d.source == 'ct' else 'brain cohort'}: {d.n_subjects} subjects "
            f"({d.val_subjects} held out)" + (f", {d.resolution} mm, contrasts {d.contrasts}" if d.source == "brain"
                                              else ""))
    losses = ", ".join(f"{k} {v:.4g}" for k, v in last.items() if k not in ("step",))
    metrics = ", ".join(f"{k.removeprefix('val/')} {v:.4g}" for k, v in val.items() if k != "step") or "none"
    return "\n".join([
        f"# {cfg.name}",
        "",
        f"- family: **{m.family}** ({m.spatial_dims}D, {m.in_channels} channel(s), size {m.size})",
        f"- data: {data}; condition: {d.condition}",
        f"- training: {step} steps, batch {cfg.train.batch_size} x {cfg.train.grad_accum}, lr {cfg.train.lr}, "
        f"seed {cfg.train.seed}, {seconds / 60:.1f} min",
        f"- final losses: {losses}",
        f"- validation: {metrics}",
        f"- written: {_dt.datetime.now(_dt.timezone.utc).isoformat(timespec='seconds')}",
        "",
        "Outputs of this model are synthetic and are marked so in their metadata by `medgen synthesize`.",
        "Load with `medgen.load_model(path)`.",
        "",
    ])
