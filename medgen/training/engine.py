"""The one training engine for every model family.

data → micro-batches → recipe phases (AMP, gradient accumulation, clipping, optimizer + LR schedule)
→ EMA → metrics/TensorBoard/progress → validation PNG → checkpoint → model folder. Runs on CPU, one
GPU, or many under ``torchrun`` (DDP); given the same seed and config it gives the same weights on CPU,
and ``resume=True`` continues a run exactly from its last checkpoint.

Run folder layout::

    RUN/checkpoint/     latest checkpoint (see medgen.training.checkpoint)
    RUN/model/          the finished, shareable model folder (load with medgen.load_model)
    RUN/metrics.jsonl   one JSON line per step: losses, learning rate; validation metrics
    RUN/samples/        PNG montages of validation samples
    RUN/tb/             TensorBoard logs
"""

from __future__ import annotations

import contextlib
import json
import math
import random
import shutil
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from monai.data import CacheDataset
from torch import nn
from torch.nn.parallel import DistributedDataParallel as DDP

from medgen.errors import ConfigError
from medgen.io.atomic import atomic_path, check_output
from medgen.models.config import to_dict
from medgen.models.hub import load_model, read_model_config, write_model
from medgen.models.normalization import Normalization
from medgen.seeding import seeded
from medgen.training import distributed
from medgen.training.checkpoint import load_checkpoint, save_checkpoint, set_rng_state
from medgen.training.config import RunConfig, check_inputs, config_dict, override, parse_config
from medgen.training.data import PreparedData, make_loader, prepare_data, random_patches
from medgen.training.ema import EMA
from medgen.training.progress import ProgressBar, tensorboard_writer
from medgen.training.recipes import Recipe, make_recipe
from medgen.training.validate import card_text, validate
from medgen.training.warm_start import init_from


@dataclass
class TrainResult:
    """What a run produced: its folder, final step, trained networks and per-step losses."""

    out: Path
    step: int
    nets: dict[str, nn.Module]
    model_dir: Path | None
    history: list[dict] = field(default_factory=list)


def seed_everything(seed: int) -> None:
    """The one place medgen seeds Python, NumPy and torch for a run (inside :func:`train`'s
    :func:`~medgen.seeding.seeded` block, so the caller's states come back afterwards)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def train(
    cfg: RunConfig, out: str | Path, *, resume: bool = False, overwrite: bool = False, device: str = "auto",
    steps: int | None = None, progress: bool = True, stop_at: int | None = None,
) -> TrainResult:
    """Train ``cfg`` into run folder ``out``.

    The config (with ``steps``), its input files and the run folder are checked before anything is
    loaded or written: a bad value or an occupied ``out`` fails at once with one line.

    Args:
        resume: continue from ``out/checkpoint``.
        overwrite: start over in an ``out`` that already holds files: its run files (:data:`RUN_FILES`)
            are deleted first, anything else is left. Without ``resume`` or ``overwrite``, ``out`` must
            be absent or empty.
        device: ``cpu``, ``cuda`` or ``auto``; AMP (``train.precision``) applies on CUDA only.
        steps: override ``train.steps`` (the total, not additional steps), checked like the YAML value.
        stop_at: stop after this step as if interrupted (the checkpoint of that step is written);
            for time-boxed jobs and the resume test.
    """
    out = Path(out)
    cfg = parse_config(override(config_dict(cfg), {"train.steps": steps}))
    check_inputs(cfg)
    check_run_folder(out, resume=resume, overwrite=overwrite)
    if resume:
        _check_same_model(cfg, out / "checkpoint" / "config.yaml")
    info = distributed.setup(device)
    try:
        if overwrite and info.main:
            for target in (out / name for name in RUN_FILES):
                if target.is_dir():
                    shutil.rmtree(target)
                else:
                    target.unlink(missing_ok=True)
        distributed.barrier(info)
        with seeded(cfg.train.seed, info.device):  # the run is seeded; the caller's random state is restored
            return _run(cfg, out, info, resume=resume, progress=progress and info.main, stop_at=stop_at)
    finally:
        distributed.teardown(info)


RUN_FILES = ("checkpoint", "model", "samples", "tb", "metrics.jsonl", "config.yaml")
"""What a run writes into its folder (see the module docstring); ``overwrite`` deletes only these."""


def check_run_folder(out: Path, *, resume: bool, overwrite: bool) -> None:
    """Refuse a run folder that would lose data: an existing, non-empty ``out`` needs ``resume`` (and a
    checkpoint) or ``overwrite``.

    Raises:
        ConfigError: naming ``out`` and the option that allows it.
    """
    if resume and overwrite:
        raise ConfigError(f"{out}: give --resume (continue the run) or --overwrite (start over), not both")
    if out.exists() and not out.is_dir():
        raise ConfigError(f"{out}: is a file, not a run folder; choose another --out")
    if resume:
        if not (out / "checkpoint" / "state.json").is_file():
            raise ConfigError(f"--resume: no checkpoint in {out / 'checkpoint'}")
        return
    if not overwrite and out.is_dir() and any(out.iterdir()):
        what = "holds a run" if any((out / name).exists() for name in RUN_FILES) else "is not empty"
        raise ConfigError(f"{out}: already {what}; pass --resume to continue it, --overwrite to start over, "
                          "or choose another --out")
    # the folder can be created and written (no file in its path, writable): io's one output check
    check_output(out, overwrite=True, is_dir=True)


def _check_same_model(cfg: RunConfig, saved: Path) -> None:
    """Refuse to resume a checkpoint whose networks ``cfg.model`` would not rebuild."""
    before = to_dict(read_model_config(saved))
    changed = [key for key, value in to_dict(cfg.model).items() if before.get(key) != value]
    if changed:
        raise ConfigError(f"--resume: key 'model.{changed[0]}' differs from the run's checkpoint ({saved}); "
                          "resume with the model section the run was started with")


def _run(cfg: RunConfig, out: Path, info: distributed.DistInfo, *, resume: bool, progress: bool,
         stop_at: int | None) -> TrainResult:
    t = cfg.train
    ckpt_dir = out / "checkpoint"
    seed_everything(t.seed)
    ckpt = load_checkpoint(ckpt_dir) if resume else None
    norm = Normalization.from_json(ckpt["normalization"]) if ckpt else None
    data = prepare_data(cfg, norm)
    vae = vae_cfg = None
    if cfg.model.family == "ldm":
        vae_model = load_model(cfg.model.vae_path)
        vae, vae_cfg = vae_model.network.to(info.device), vae_model.config
    recipe = make_recipe(cfg, data.cond_dim, vae, vae_cfg)
    if vae is not None:
        data = _with_latents(data, vae, info.device)
    if recipe.init_from_data is not None and ckpt is None:
        key = "latent" if vae is not None else "image"
        recipe.init_from_data(torch.stack([item[key] for item in data.train]))
    if t.init_from and ckpt is None:
        counts = init_from(recipe.nets[recipe.ema_key], t.init_from)
        if info.main:
            print(f"{cfg.name}: weights from {t.init_from} ({counts['copied']} tensors copied, "
                  f"{counts['from_unet']} ControlNet tensors from its UNet, {counts['fresh']} fresh)", flush=True)
    nets = {k: v.to(info.device) for k, v in recipe.nets.items()}
    emas = {recipe.ema_key: EMA(nets[recipe.ema_key], t.ema_decay)} if t.ema_decay > 0 else {}
    optimizers = {name: torch.optim.AdamW(nets[name].parameters(), lr=_lr(cfg, name), betas=tuple(t.betas),
                                          weight_decay=t.weight_decay) for name, _ in recipe.phases}
    schedulers = {n: torch.optim.lr_scheduler.LambdaLR(o, _schedule(cfg)) for n, o in optimizers.items()}
    amp_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(t.precision)
    use_amp = info.device.type == "cuda" and amp_dtype is not None
    scalers = {n: torch.amp.GradScaler("cuda", enabled=use_amp and amp_dtype == torch.float16) for n in optimizers}
    rng = torch.Generator().manual_seed(t.seed * 1000 + info.rank)
    step = 0
    if ckpt:
        for n, net in nets.items():
            net.load_state_dict(ckpt["nets"][n])
        for n, e in emas.items():
            e.shadow.load_state_dict(ckpt["ema"][n])
        for n in optimizers:
            optimizers[n].load_state_dict(ckpt["optimizers"][n])
            schedulers[n].load_state_dict(ckpt["schedulers"][n])
            if ckpt["scalers"].get(n):
                scalers[n].load_state_dict(ckpt["scalers"][n])
        step = ckpt["step"]
        set_rng_state(ckpt["rng_tensors"], ckpt["rng"], rng)
    wrapped = {k: DDP(v, device_ids=[info.device.index] if info.device.type == "cuda" else None)
               if info.world > 1 else v for k, v in nets.items()}
    loader, sampler = make_loader(data, cfg, info.rank, info.world)
    batches = _batches(loader, sampler, step * t.grad_accum)
    writer = tensorboard_writer(out / "tb") if info.main else None
    history: list[dict] = []
    out.mkdir(parents=True, exist_ok=True)
    if info.main:
        (out / "config.yaml").write_text(_yaml(config_dict(cfg)))
    autocast = (lambda: torch.autocast("cuda", dtype=amp_dtype)) if use_amp else contextlib.nullcontext
    bar = ProgressBar(cfg.name if progress else None, t.steps, step)
    started = time.perf_counter()
    try:
        while step < t.steps:
            micro = [_to_device(next(batches), info.device) for _ in range(t.grad_accum)]
            if cfg.data.patch_size:
                micro = [random_patches(b, cfg.data.patch_size, rng) for b in micro]
            record: dict = {"step": step + 1}
            for name, loss_fn in recipe.phases:
                opt, scaler = optimizers[name], scalers[name]
                opt.zero_grad(set_to_none=True)
                for batch in micro:
                    with autocast():
                        loss, parts = loss_fn(wrapped, batch, step, rng)
                    scaler.scale(loss / t.grad_accum).backward()
                    for k, v in parts.items():
                        record[k] = record.get(k, 0.0) + v / t.grad_accum
                if t.grad_clip > 0:
                    scaler.unscale_(opt)
                    torch.nn.utils.clip_grad_norm_(nets[name].parameters(), t.grad_clip)
                scaler.step(opt)
                scaler.update()
                schedulers[name].step()
            for key, e in emas.items():
                e.update(nets[key], step)
            step += 1
            record["lr"] = schedulers[recipe.phases[0][0]].get_last_lr()[0]
            history.append(record)
            if info.main:
                _log(out, writer, record, step, t.log_every)
                bar.update(step, " ".join(f"{k}={v:.4g}" for k, v in record.items() if k not in ("step", "lr")))
            final = step == t.steps
            if info.main and t.val_every and (step % t.val_every == 0 or final):
                metrics = validate(cfg, recipe, _inference_net(recipe, nets, emas), data, step, out, info.device)
                if metrics:
                    _log(out, writer, {"step": step, **{f"val/{k}": v for k, v in metrics.items()}}, step, 1)
            if (t.checkpoint_every and step % t.checkpoint_every == 0) or final or step == stop_at:
                if info.main:
                    save_checkpoint(ckpt_dir, run_config=config_dict(cfg), nets=nets,
                                    ema={k: e.shadow for k, e in emas.items()}, optimizers=optimizers,
                                    schedulers=schedulers, scalers=scalers, step=step, generator=rng,
                                    normalization=data.normalization.to_json(), reference=data.reference)
                distributed.barrier(info)
            if step == stop_at:
                break
    finally:
        bar.stop()
        if writer is not None:
            writer.close()
    model_dir = None
    if step == t.steps:
        inference = _inference_net(recipe, nets, emas)
        if cfg.model.family == "vae":
            _set_latent_scale(inference, data, info.device)
        if info.main:
            model_dir = _export(cfg, out, inference, data, vae, vae_cfg, step, history,
                                time.perf_counter() - started)
        distributed.barrier(info)
    return TrainResult(out, step, nets, model_dir, history)


def _lr(cfg: RunConfig, name: str) -> float:
    return cfg.train.disc_lr if name == "disc" and cfg.train.disc_lr is not None else cfg.train.lr


def _schedule(cfg: RunConfig):
    t = cfg.train

    def factor(step: int) -> float:
        if t.warmup_steps and step < t.warmup_steps:
            return (step + 1) / t.warmup_steps
        if t.lr_schedule == "constant":
            return 1.0
        progress = (step - t.warmup_steps) / max(1, t.steps - t.warmup_steps)
        return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    return factor


def _batches(loader, sampler, start: int):
    """Endless micro-batches, starting at global micro-batch ``start``; order set by (seed, epoch)."""
    per_epoch = len(loader)
    epoch, skip = divmod(start, per_epoch)
    while True:
        sampler.set_epoch(epoch)
        for i, batch in enumerate(loader):
            if i >= skip:
                yield batch
        skip = 0
        epoch += 1


def _to_device(batch: dict, device: torch.device) -> dict:
    return {k: torch.as_tensor(v).to(device, non_blocking=True) for k, v in batch.items()
            if isinstance(v, torch.Tensor)}


def _inference_net(recipe: Recipe, nets: dict, emas: dict) -> nn.Module:
    key = recipe.ema_key
    return emas[key].shadow if key in emas else nets[key]


@torch.no_grad()
def _set_latent_scale(vae: nn.Module, data: PreparedData, device: torch.device) -> None:
    """Store ``1 / std`` of the training latents (read by latent diffusion) and the fitted prior."""
    vae.latent_scale.fill_(1.0)
    was_training = vae.training
    vae.eval()
    latents = [vae.encode(item["image"][None].to(device)) for item in data.train]
    std = torch.cat([z.flatten() for z in latents]).std()
    vae.latent_scale.fill_(float(1.0 / std.clamp_min(1e-6)))
    vae.fit_prior(latents)
    vae.train(was_training)


@torch.no_grad()
def _with_latents(data: PreparedData, vae: nn.Module, device: torch.device) -> PreparedData:
    """The training set with each image's scaled latent ``"latent"`` ``(latent_channels, *latent size)``,
    encoded once: the frozen VAE's latent mean is deterministic, so latent diffusion need not run the
    encoder on every step (on a CPU it costs more than the diffusion step itself)."""
    items = [{**item, "latent": vae.encode(item["image"][None].to(device))[0].cpu()} for item in data.train]
    return replace(data, train=CacheDataset(items, transform=None, cache_rate=1.0, num_workers=0, progress=False))


def _export(cfg, out, inference, data, vae, vae_cfg, step, history, seconds) -> Path:
    folder = out / "model"
    with atomic_path(folder, overwrite=True, is_dir=True) as tmp:
        metrics_path = out / "metrics.jsonl"
        val = [json.loads(line) for line in metrics_path.read_text().splitlines() if '"val/' in line]
        card = card_text(cfg, step, history[-1] if history else {}, val[-1] if val else {}, seconds)
        write_model(tmp, run_config=config_dict(cfg), network=inference, normalization=data.normalization,
                    reference=data.reference, card=card, vae=vae, vae_config=vae_cfg)
    return folder


def _log(out: Path, writer, record: dict, step: int, every: int) -> None:
    with open(out / "metrics.jsonl", "a") as fh:
        fh.write(json.dumps(record) + "\n")
    if writer is not None and (step % max(1, every) == 0 or any(k.startswith("val/") for k in record)):
        for k, v in record.items():
            if k != "step" and isinstance(v, (int, float)):
                writer.add_scalar(k, v, step)


def _yaml(data: dict) -> str:
    import yaml

    return yaml.safe_dump(data, sort_keys=False)
