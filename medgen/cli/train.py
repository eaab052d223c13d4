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
    device: str = typer.Option("auto", "--device", help="cpu, cuda or auto."),
    steps: int | None = typer.Option(None, "--steps", help="Total optimizer steps (overrides train.steps)."),
) -> None:
    """Train a generative model; writes checkpoints, logs and a shareable model folder (RUN/model)."""
    from medgen.training import load_config
    from medgen.training import train as run_training

    cfg = load_config(config)
    if data is not None:
        cfg.data.source, cfg.data.folder = "folder", str(data)
    run_dir = out if out is not None else Path("runs") / cfg.name
    result = run_training(cfg, run_dir, resume=resume, device=device, steps=steps)
    if result.model_dir is not None:
        console.print(f"model: [bold]{result.model_dir}[/bold] (load with medgen.load_model)")
