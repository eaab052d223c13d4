"""The small optimisation loop shared by every single-task fit outside the engine.

:func:`medgen.training.train` (the engine) trains the generative model families from a YAML config:
several networks in phases, EMA, DDP, validation samples and model folders. Everything else medgen
optimises — the shipped enhancement and feature networks (``scripts/train_*.py``), the per-scan
self-supervised fits (SMORE, Neighbor2Neighbor adaptation), the QC flow and the downstream
segmenter — is one or two networks trained for a number of steps on batches its caller draws. Those
run through :func:`fit`, so that learning-rate schedules, time budgets, bf16 autocast, gradient
clipping, progress bars with ETA, TensorBoard logs and exact resume from a checkpoint behave the same
everywhere. They stay out of the engine because their data are not run-config datasets (random crops
of one scan, feature vectors, on-device synthetic batches) and they need none of its model-folder
machinery.

A step: for each :class:`Phase` in order, ``loss = phase.loss(step)`` (under autocast when asked),
backward, clip, optimiser step, then the LR schedule; ``progress = step / steps``, or the elapsed
fraction of ``time_budget_s`` when that is larger, sets the learning rate ``lr * schedule(progress)``.

Example:
    >>> net = torch.nn.Linear(3, 1)
    >>> x, y = torch.randn(64, 3), torch.randn(64, 1)
    >>> result = fit([Phase(net, lambda step: ((net(x) - y) ** 2).mean(), lr=1e-2)], steps=20)
    >>> len(result.losses["loss"])
    20
"""

from __future__ import annotations

import contextlib
import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from medgen.io.atomic import atomic_path
from medgen.training.checkpoint import flatten_state, unflatten_state
from medgen.training.progress import ProgressBar, tensorboard_writer


def cosine(final: float = 0.0, warmup: float = 0.0) -> Callable[[float], float]:
    """LR multiplier: linear warm-up over the first ``warmup`` of training, then cosine from 1 to ``final``.

    ``cosine(final)`` without warm-up equals ``CosineAnnealingLR(T_max=steps, eta_min=final * lr)``.
    """

    def factor(progress: float) -> float:
        if progress < warmup:
            return max(progress / warmup, 0.01)
        t = min((progress - warmup) / (1 - warmup), 1.0) if warmup < 1 else 1.0
        return final + (1 - final) * 0.5 * (1 + math.cos(math.pi * t))

    return factor


def constant(progress: float) -> float:
    """LR multiplier 1 throughout."""
    return 1.0


@dataclass
class Phase:
    """One network's update within a step.

    Attributes:
        net: the module whose parameters this phase updates.
        loss: ``loss(step) -> scalar tensor`` (``step`` counts from 0); the caller draws its batch
            inside, from its own generator. ``parts`` it wants logged can be stored on ``extra``.
        lr, betas, weight_decay: Adam(W) settings (AdamW when ``weight_decay`` > 0).
        grad_clip: max gradient norm (0: none).
        name: key of this phase's loss in the results and logs.
    """

    net: nn.Module
    loss: Callable[[int], torch.Tensor]
    lr: float = 1e-3
    betas: tuple[float, float] = (0.9, 0.999)
    weight_decay: float = 0.0
    grad_clip: float = 0.0
    name: str = "loss"
    optimizer: torch.optim.Optimizer = field(init=False, repr=False)

    def __post_init__(self) -> None:
        kind = torch.optim.AdamW if self.weight_decay > 0 else torch.optim.Adam
        self.optimizer = kind(self.net.parameters(), lr=self.lr, betas=self.betas, weight_decay=self.weight_decay)


@dataclass
class FitResult:
    """Per-phase losses of every step run, the last step and the seconds spent (this call only)."""

    losses: dict[str, list[float]]
    step: int
    seconds: float


def fit(
    phases: Sequence[Phase],
    *,
    steps: int,
    schedule: Callable[[float], float] = constant,
    time_budget_s: float | None = None,
    bf16: bool = False,
    device: str | torch.device = "cpu",
    callback: Callable[[int, float], None] | None = None,
    progress: str | None = None,
    log_dir: str | Path | None = None,
    log_every: int = 100,
    checkpoint: str | Path | None = None,
    checkpoint_every_s: float | None = None,
    on_checkpoint: Callable[[int], None] | None = None,
    resume: bool = False,
    generators: Sequence[torch.Generator] = (),
    stop_at: int | None = None,
) -> FitResult:
    """Run ``steps`` optimisation steps of ``phases`` (see the module docstring).

    Args:
        schedule: ``progress in [0, 1] -> LR multiplier`` (:func:`cosine`, :func:`constant`).
        time_budget_s: stop once this many seconds have passed; the schedule then follows time.
        bf16: run each loss under bfloat16 autocast on ``device``'s type (weights stay float32).
        callback: ``callback(step, loss)`` after every step, with the first phase's loss.
        progress: a description turns on a rich progress bar with ETA.
        log_dir: TensorBoard folder for each phase's loss and the learning rate, every ``log_every``.
        checkpoint: folder for an exact-resume checkpoint (weights, optimiser states, the step and
            ``generators``' states; safetensors + JSON, no pickle), written atomically every
            ``checkpoint_every_s`` seconds and at the end; ``on_checkpoint(step)`` runs after each
            write (e.g. to export the model so far).
        resume: continue from ``checkpoint`` (the steps already done count towards ``steps``).
        generators: the caller's batch generators, saved and restored with the checkpoint.
        stop_at: stop after this step as if interrupted (the schedule still spans ``steps``).
    """
    if steps < 0:
        raise ValueError(f"steps must be >= 0, got {steps}")
    checkpoint = Path(checkpoint) if checkpoint is not None else None
    done, spent = 0, 0.0
    if resume:
        if checkpoint is None or not (checkpoint / "loop.json").is_file():
            raise FileNotFoundError(f"no loop checkpoint to resume in {checkpoint}")
        done, spent = _load(checkpoint, phases, generators)
    for phase in phases:
        phase.net.to(device).train()
    autocast = (lambda: torch.autocast(torch.device(device).type, dtype=torch.bfloat16)) if bf16 \
        else contextlib.nullcontext
    writer = tensorboard_writer(log_dir)
    bar = ProgressBar(progress, steps, done)
    losses: dict[str, list[float]] = {p.name: [] for p in phases}
    start = time.perf_counter() - spent
    last_save = time.perf_counter()
    step = done
    try:
        while step < min(steps, stop_at if stop_at is not None else steps):
            elapsed = time.perf_counter() - start
            if time_budget_s is not None and elapsed >= time_budget_s:
                break
            frac = step / max(steps, 1)
            if time_budget_s:
                frac = max(frac, elapsed / time_budget_s)
            lr_factor = schedule(frac)
            for phase in phases:
                for group in phase.optimizer.param_groups:
                    group["lr"] = phase.lr * lr_factor
                with autocast():
                    loss = phase.loss(step)
                phase.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if phase.grad_clip > 0:
                    nn.utils.clip_grad_norm_(phase.net.parameters(), phase.grad_clip)
                phase.optimizer.step()
                losses[phase.name].append(float(loss.detach()))
            step += 1
            first = losses[phases[0].name][-1]
            if callback is not None:
                callback(step - 1, first)
            bar.update(step, f"loss {first:.4g}")
            if writer is not None and (step % max(log_every, 1) == 0 or step == steps):
                for name, values in losses.items():
                    writer.add_scalar(f"train/{name}", values[-1], step)
                writer.add_scalar("train/lr", phases[0].lr * lr_factor, step)
            if checkpoint is not None and checkpoint_every_s and time.perf_counter() - last_save > checkpoint_every_s:
                _save(checkpoint, phases, generators, step, time.perf_counter() - start, on_checkpoint)
                last_save = time.perf_counter()
    finally:
        bar.stop()
        if writer is not None:
            writer.close()
    seconds = time.perf_counter() - start
    if checkpoint is not None and step > done:
        _save(checkpoint, phases, generators, step, seconds, on_checkpoint)
    for phase in phases:
        phase.net.eval()
    return FitResult(losses, step, seconds)


def _save(folder: Path, phases: Sequence[Phase], generators: Sequence[torch.Generator], step: int,
          seconds: float, on_checkpoint: Callable[[int], None] | None) -> None:
    with atomic_path(folder, overwrite=True, is_dir=True) as tmp:
        save_file({f"{i}.{k}": v.detach().cpu().contiguous() for i, p in enumerate(phases)
                   for k, v in p.net.state_dict().items()}, str(tmp / "model.safetensors"))
        tensors: dict[str, torch.Tensor] = {f"generator{i}": g.get_state() for i, g in enumerate(generators)}
        opts = [flatten_state(p.optimizer.state_dict(), f"opt{i}", tensors) for i, p in enumerate(phases)]
        save_file(tensors, str(tmp / "state.safetensors"))
        (tmp / "loop.json").write_text(json.dumps({"step": step, "seconds": seconds, "optimizers": opts}))
    if on_checkpoint is not None:
        on_checkpoint(step)


def _load(folder: Path, phases: Sequence[Phase], generators: Sequence[torch.Generator]) -> tuple[int, float]:
    meta = json.loads((folder / "loop.json").read_text())
    weights = load_file(str(folder / "model.safetensors"))
    tensors = load_file(str(folder / "state.safetensors"))
    for i, phase in enumerate(phases):
        prefix = f"{i}."
        phase.net.load_state_dict({k[len(prefix):]: v for k, v in weights.items() if k.startswith(prefix)})
        phase.optimizer.load_state_dict(unflatten_state(meta["optimizers"][i], tensors))
    for i, g in enumerate(generators):
        g.set_state(tensors[f"generator{i}"])
    return int(meta["step"]), float(meta["seconds"])
