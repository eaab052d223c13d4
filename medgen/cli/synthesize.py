"""``medgen synthesize MODEL_DIR``: write synthetic NIfTI volumes from a trained model."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

from medgen.cli import app

console = Console()


@app.command()
def synthesize(
    model_dir: Path = typer.Argument(..., help="Model folder written by medgen train (RUN/model)."),
    num: int = typer.Option(1, "--num", min=1, help="Number of volumes."),
    out: Path = typer.Option(..., "--out", help="Output folder for sample_XXX.nii.gz."),
    seed: int = typer.Option(0, "--seed", help="Seed of the first sample (sample i uses seed + i)."),
    sampler: str | None = typer.Option(None, "--sampler", help="Diffusion: ddpm, ddim or rflow."),
    steps: int | None = typer.Option(None, "--steps", help="Diffusion sampling steps."),
    condition: str | None = typer.Option(None, "--condition", help="Vector like 0,1 or a label-map file."),
    guidance: float = typer.Option(1.0, "--guidance", help="Classifier-free guidance scale."),
    device: str = typer.Option("auto", "--device", help="cpu, cuda or auto."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace existing samples."),
) -> None:
    """Sample NIfTI volumes marked synthetic (model, seed, sampler, steps in their metadata)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from medgen.models import load_model
    from medgen.synthesize import parse_condition, save_samples
    from medgen.synthesize import synthesize as draw
    from medgen.training.distributed import resolve_device

    model = load_model(model_dir, device=resolve_device(device))
    with Progress(TextColumn("synthesize"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn()) as bar:
        task = bar.add_task("", total=num)
        scans = draw(model, num, seed=seed, sampler=sampler, steps=steps, condition=parse_condition(condition),
                     guidance=guidance, progress=lambda i, n: bar.update(task, completed=i))
    for path in save_samples(scans, out, overwrite=overwrite):
        console.print(f"  [bold]{path}[/bold]")
