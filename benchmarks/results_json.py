"""One way for every benchmark to write its results: ``benchmarks/results/NAME.json`` with the command,
commit (and whether the tree was dirty), date and thread count beside the figures, written atomically."""

from __future__ import annotations

import datetime
import json
import subprocess
import sys
from pathlib import Path

import torch

from medgen.io.atomic import atomic_path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"


def _git(*cmd: str) -> str:
    try:
        return subprocess.run(["git", *cmd], cwd=ROOT, capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def write_results(path: str | Path, figures: dict) -> Path:
    """Write ``figures`` with the run's provenance to ``path`` (a bare name goes to ``benchmarks/results``)."""
    out = Path(path) if Path(path).parent != Path(".") else RESULTS / path
    record = {"command": " ".join(["python", Path(sys.argv[0]).as_posix(), *sys.argv[1:]]),
              "commit": _git("rev-parse", "HEAD"), "dirty": bool(_git("status", "--porcelain")),
              "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
              "threads": torch.get_num_threads(), **figures}
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out, overwrite=True) as tmp:
        tmp.write_text(json.dumps(record, indent=1))
    print(f"wrote {out}")
    return out
