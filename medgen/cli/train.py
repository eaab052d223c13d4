"""``medgen train CONFIG``: train a VAE, GAN or diffusion model from a YAML config (also under torchrun)."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

from medgen.cli import app

console = Console()


@app.command()
def train(
    config: Path = typer.Argument(..., help="YAML run config (see configs/)."),
    data: Path | None = typer.Option(None, "--data", help="Train on the scans in this folder instead."),
    out: Path | None = typer.Option(None, "--out", help="Run folder (default: runs/<config name>)."),
    resume: bool = typer.Option(False, "--resume", help="Continue from the run folder's last checkpoint."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Start over in a run folder that already holds a "
                                   "run (its checkpoint, model, logs and samples are deleted first)."),
    device: str = typer.Option("auto", "--device", help="cpu, cuda or auto."),
    steps: int | None = typer.Option(None, "--steps", help="Total optimizer steps (overrides train.steps)."),
) -> None:
    """Train a generative model; writes checkpoints, logs and a shareable model folder (RUN/model)."""
    from medgen.io.atomic import safe_join
    from medgen.training import load_config
    from medgen.training import train as run_training

    folder = {"data.source": "folder", "data.folder": str(data)} if data is not None else {}
    cfg = load_config(config, overrides={"train.steps": steps, **folder})
    run_dir = out if out is not None else safe_join("runs", cfg.name)
    result = run_training(cfg, run_dir, resume=resume, overwrite=overwrite, device=device)
    if result.model_dir is not None:
        console.print(f"model: [bold]{result.model_dir}[/bold] (load with medgen.load_model)")
