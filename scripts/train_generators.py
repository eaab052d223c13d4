"""Train the shipped brain generators from their configs in one process, and ship their model folders.

One process for all configs: the simulated cohort is built once and reused by every run (with 168
subjects at 3 mm that saves about a minute per config). Each run goes through the engine
(``medgen.training.train``: bf16 on CUDA, checkpoints every ``train.checkpoint_every`` steps, exact
``--resume``); its model folder is then copied to ``--ship/<name>/`` (``medgen/weights`` by default,
where ``medgen.load_model(NAME)`` finds it) with the exact command, device and wall time appended to
its card. Afterwards score them with ``benchmarks/models.py --models NAME ...``.

    python scripts/train_generators.py configs/brain-rflow.yaml configs/brain-gan.yaml \\
        configs/brain-labels.yaml --device cuda --runs runs
    python scripts/train_generators.py configs/brain-gan.yaml --steps 2 --runs /tmp/r --ship /tmp/s  # smoke
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

import torch

from medgen.io.atomic import atomic_path
from medgen.training import train
from medgen.training.config import load_config

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("configs", nargs="+", type=Path)
    p.add_argument("--device", default="auto")
    p.add_argument("--steps", type=int, default=None, help="override train.steps (smoke runs)")
    p.add_argument("--runs", type=Path, default=Path("runs"), help="run folders go to RUNS/<name>")
    p.add_argument("--ship", type=Path, default=ROOT / "medgen" / "weights", help="model folders go to SHIP/<name>")
    p.add_argument("--resume", action="store_true", help="continue runs from their checkpoints")
    args = p.parse_args()
    configs = [load_config(c) for c in args.configs]  # every config is checked before any training
    for path, cfg in zip(args.configs, configs):
        t0 = time.time()
        run = args.runs / cfg.name
        result = train(cfg, run, device=args.device, steps=args.steps, resume=args.resume and run.exists(),
                       overwrite=not args.resume)
        if result.model_dir is None:
            sys.exit(f"error: {cfg.name}: the run stopped before its last step; rerun with --resume")
        device = torch.cuda.get_device_name() if torch.cuda.is_available() and args.device != "cpu" else "CPU"
        command = f"python scripts/train_generators.py {' '.join(sys.argv[1:])}"
        seconds = time.time() - t0
        with atomic_path(args.ship / cfg.name, overwrite=True, is_dir=True) as tmp:
            shutil.copytree(result.model_dir, tmp, dirs_exist_ok=True)
            card = (tmp / "model_card.md").read_text()
            (tmp / "model_card.md").write_text(
                card.rstrip() + f"\n\n## How it was made\n\n- config: `{path.as_posix()}`\n"
                f"- command: `{command}`\n- device: {device}; wall time of this call {seconds:.0f} s\n")
            record = card_record(cfg, path, command, device, seconds, args.steps)
            (tmp / "card.json").write_text(json.dumps(record, indent=2) + "\n")
        print(f"shipped {cfg.name} -> {args.ship / cfg.name} ({time.time() - t0:.0f} s)", flush=True)


def card_record(cfg, path: Path, command: str, device: str, seconds: float, steps: int | None = None) -> dict:
    """``card.json`` of a shipped generator: what it is, its training run; ``metrics`` stay empty until
    ``benchmarks/models.py --cards`` writes the held-out figures in."""
    header = [line[1:].strip() for line in path.read_text().splitlines() if line.startswith("#")]
    d, t = cfg.data, cfg.train
    return {
        "name": cfg.name,
        "description": " ".join(header).split(". ")[0].strip() + ".",  # the config's first sentence
        "training": {
            "data": f"built-in brain cohort (medgen.data.brain_cohort), {d.n_subjects} subjects ({d.val_subjects} "
                    f"held out), {d.resolution} mm, contrasts {d.contrasts}",
            "steps": steps or t.steps, "batch": t.batch_size, "lr": t.lr, "seed": t.seed, "ema_decay": t.ema_decay,
            "wall_time_s": round(seconds), "device": device, "config": path.as_posix(), "command": command,
        },
        "metrics": {},
        "metrics_source": "not benchmarked yet: python benchmarks/models.py --models NAME --cards",
        "license": "Apache-2.0",
    }


if __name__ == "__main__":
    main()
