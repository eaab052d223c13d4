"""Single device to many GPUs: set up ``torch.distributed`` from ``torchrun``'s environment.

Under ``torchrun`` (``WORLD_SIZE > 1``) each process joins the group (``nccl`` on CUDA, ``gloo`` on
CPU) and uses GPU ``LOCAL_RANK``; rank 0 alone logs and writes checkpoints. Without it, the run is a
plain single-process one.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from medgen.errors import ConfigError


@dataclass
class DistInfo:
    rank: int
    world: int
    device: torch.device

    @property
    def main(self) -> bool:
        return self.rank == 0


def resolve_device(name: str) -> torch.device:
    """``cpu``, ``cuda`` or ``auto`` (CUDA when available) → a torch device."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"key 'device': '{name}' requested but no CUDA GPU is available (use --device cpu)")
    if name not in ("cpu", "cuda") and not name.startswith("cuda:"):
        raise ConfigError(f"key 'device': expected cpu, cuda or auto, got '{name}'")
    return torch.device(name)


def setup(device: str = "auto") -> DistInfo:
    """Join the process group when launched by ``torchrun``; else single process."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    dev = resolve_device(device)
    if world <= 1:
        return DistInfo(0, 1, dev)
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if dev.type == "cuda":
        dev = torch.device("cuda", local)
        torch.cuda.set_device(dev)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if dev.type == "cuda" else "gloo")
    return DistInfo(dist.get_rank(), dist.get_world_size(), dev)


def barrier(info: DistInfo) -> None:
    if info.world > 1:
        dist.barrier()


def teardown(info: DistInfo) -> None:
    if info.world > 1 and dist.is_initialized():
        dist.destroy_process_group()
