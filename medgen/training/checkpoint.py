"""Checkpoints: everything needed to continue a run exactly, with no pickle.

A checkpoint folder holds ``config.yaml``, ``model.safetensors`` (all trained networks, keys
prefixed by network name), ``ema.safetensors``, ``optimizer.safetensors`` + ``state.json`` (step,
optimizer hyper-parameters, LR-schedule, grad-scaler and Python/NumPy RNG states), ``rng.safetensors``
(torch RNG states) and ``normalization.json``. It is written atomically: a crash mid-write leaves the
previous checkpoint intact.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from medgen.errors import DataError
from medgen.io.atomic import atomic_path


def flatten_state(state: Any, prefix: str, tensors: dict[str, torch.Tensor]) -> Any:
    """Move every tensor of a nested state dict into ``tensors`` (keyed by path); return the JSON rest."""
    if isinstance(state, torch.Tensor):
        tensors[prefix] = state.detach().cpu().contiguous()
        return {"__tensor__": prefix}
    if isinstance(state, dict):
        return {"__dict__": [[_key(k), flatten_state(v, f"{prefix}/{k}", tensors)] for k, v in state.items()]}
    if isinstance(state, (list, tuple)):
        return [flatten_state(v, f"{prefix}/{i}", tensors) for i, v in enumerate(state)]
    return state


def unflatten_state(data: Any, tensors: dict[str, torch.Tensor]) -> Any:
    """Inverse of :func:`flatten_state`."""
    if isinstance(data, dict) and "__tensor__" in data:
        return tensors[data["__tensor__"]]
    if isinstance(data, dict) and "__dict__" in data:
        return {_unkey(k): unflatten_state(v, tensors) for k, v in data["__dict__"]}
    if isinstance(data, list):
        return [unflatten_state(v, tensors) for v in data]
    return data


def _key(k: Any) -> Any:
    return {"__int__": k} if isinstance(k, int) else k


def _unkey(k: Any) -> Any:
    return k["__int__"] if isinstance(k, dict) else k


def rng_state(generator: torch.Generator) -> tuple[dict[str, torch.Tensor], dict]:
    """Torch (CPU, CUDA, engine generator), NumPy and Python RNG states: tensors and JSON parts."""
    tensors = {"torch": torch.get_rng_state(), "engine": generator.get_state()}
    if torch.cuda.is_available():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"cuda{i}"] = s
    np_state = np.random.get_state()
    py_state = random.getstate()
    return tensors, {
        "numpy": [np_state[0], np_state[1].tolist(), *np_state[2:]],
        "python": [py_state[0], list(py_state[1]), py_state[2]],
    }


def set_rng_state(tensors: dict[str, torch.Tensor], data: dict, generator: torch.Generator) -> None:
    torch.set_rng_state(tensors["torch"])
    generator.set_state(tensors["engine"])
    cuda = [tensors[k] for k in sorted(k for k in tensors if k.startswith("cuda"))]
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda[: torch.cuda.device_count()])
    n = data["numpy"]
    np.random.set_state((n[0], np.asarray(n[1], dtype=np.uint32), *n[2:]))
    p = data["python"]
    random.setstate((p[0], tuple(p[1]), p[2]))


def save_checkpoint(
    folder: Path, *, run_config: dict, nets: dict[str, torch.nn.Module], ema: dict[str, torch.nn.Module],
    optimizers: dict, schedulers: dict, scalers: dict, step: int, generator: torch.Generator,
    normalization: dict, reference: dict,
) -> Path:
    """Write a checkpoint folder atomically (replacing an older one). Returns ``folder``."""
    with atomic_path(folder, overwrite=True, is_dir=True) as tmp:
        (tmp / "config.yaml").write_text(yaml.safe_dump(run_config, sort_keys=False))
        save_file({f"{n}.{k}": v.detach().cpu().contiguous() for n, net in nets.items()
                   for k, v in net.state_dict().items()}, str(tmp / "model.safetensors"))
        if ema:
            save_file({f"{n}.{k}": v.detach().cpu().contiguous() for n, net in ema.items()
                       for k, v in net.state_dict().items()}, str(tmp / "ema.safetensors"))
        opt_tensors: dict[str, torch.Tensor] = {}
        opt_json = {n: flatten_state(o.state_dict(), n, opt_tensors) for n, o in optimizers.items()}
        save_file(opt_tensors, str(tmp / "optimizer.safetensors"))
        rng_tensors, rng_json = rng_state(generator)
        save_file(rng_tensors, str(tmp / "rng.safetensors"))
        state = {
            "step": step, "optimizers": opt_json, "rng": rng_json,
            "schedulers": {n: s.state_dict() for n, s in schedulers.items()},
            "scalers": {n: s.state_dict() for n, s in scalers.items()},
        }
        (tmp / "state.json").write_text(json.dumps(state))
        (tmp / "normalization.json").write_text(json.dumps(normalization, indent=2))
        (tmp / "reference.json").write_text(json.dumps(reference, indent=2))
    return folder


def load_checkpoint(folder: Path) -> dict[str, Any]:
    """Read a checkpoint folder: ``{"step", "nets", "ema", "optimizers", "schedulers", "scalers", "rng", ...}``.

    ``nets``/``ema`` map network name → state dict; optimizer states are rebuilt from safetensors.

    Raises:
        DataError: a file is missing, truncated or not what the checkpoint wrote (one line naming it).
    """
    try:
        return _read_checkpoint(folder)
    except (OSError, ValueError, KeyError, TypeError, IndexError, SafetensorError) as err:
        # json.JSONDecodeError is a ValueError; the message names the folder and what failed
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise DataError(f"{folder}: damaged checkpoint, cannot resume ({reason}); start over with --overwrite") \
            from None


def _read_checkpoint(folder: Path) -> dict[str, Any]:
    state = json.loads((folder / "state.json").read_text())
    tensors = load_file(str(folder / "optimizer.safetensors"))

    def split(path: Path) -> dict[str, dict[str, torch.Tensor]]:
        out: dict[str, dict[str, torch.Tensor]] = {}
        if path.is_file():
            for key, value in load_file(str(path)).items():
                name, sub = key.split(".", 1)
                out.setdefault(name, {})[sub] = value
        return out

    return {
        "step": state["step"],
        "nets": split(folder / "model.safetensors"),
        "ema": split(folder / "ema.safetensors"),
        "optimizers": {n: unflatten_state(d, tensors) for n, d in state["optimizers"].items()},
        "schedulers": state["schedulers"],
        "scalers": state["scalers"],
        "rng_tensors": load_file(str(folder / "rng.safetensors")),
        "rng": state["rng"],
        "normalization": json.loads((folder / "normalization.json").read_text()),
        "reference": json.loads((folder / "reference.json").read_text()),
    }
