"""Store a model folder's float32 weights as float16 (half the size; the networks load them as float32).

The shipped brain generators are kept under ~80 MB together this way. Sampling from the float16 copy
differs from the float32 one by float16 rounding of the weights (relative 5e-4), far below the
sampler's own variation; ``benchmarks/models.py`` scores the shipped (float16) folders.

    python scripts/half_weights.py medgen/weights/brain-rflow medgen/weights/brain-labels
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from medgen.io.atomic import atomic_path


def halve(folder: Path) -> tuple[int, int]:
    """Rewrite ``folder/model.safetensors`` with float32 tensors as float16; returns (bytes before, after)."""
    path = folder / "model.safetensors"
    before = path.stat().st_size
    tensors = {k: v.half() if v.dtype == torch.float32 else v for k, v in load_file(str(path)).items()}
    with atomic_path(path, overwrite=True) as tmp:
        save_file(tensors, str(tmp))
    card = folder / "card.json"
    if card.is_file():
        record = json.loads(card.read_text())
        record.setdefault("training", {})["weights"] = "float16 copy of the float32 weights (scripts/half_weights.py)"
        with atomic_path(card, overwrite=True) as tmp:
            tmp.write_text(json.dumps(record, indent=2) + "\n")
    return before, path.stat().st_size


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("folders", nargs="+", type=Path)
    for folder in p.parse_args().folders:
        before, after = halve(folder)
        print(f"{folder}: {before / 1e6:.1f} MB -> {after / 1e6:.1f} MB")


if __name__ == "__main__":
    main()
