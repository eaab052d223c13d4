"""``medgen demo``: run the main job on the built-in data."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

from medgen.cli import app

console = Console()


@app.command()
def demo(
    out: Path = typer.Option(Path("medgen_demo"), "--out", help="Output folder."),
    steps: int = typer.Option(None, "--steps", min=1, help="Training steps per demo model (default: the demo's own)."),
    sample_steps: int = typer.Option(None, "--sample-steps", min=1,
                                     help="Sampler steps of the shipped diffusion generators (default: their own)."),
    models: bool = typer.Option(True, "--models/--no-models", help="Train and sample the three small models."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace outputs of an earlier demo."),
) -> None:
    """Run medgen on the built-in data: scan I/O, simulated cohort, CT phantom, enhancement and three
    small models.

    Writes every format, PNG montages of the cohort and phantom, denoises a noisy MNI152 crop and
    super-resolves a thick-slice one (PSNR printed), samples the shipped brain generators, then trains a
    small VAE, GAN and rectified-flow model on the 3 mm cohort (a few minutes on a CPU) and writes
    their samples.
    """
    from medgen.demo.enhance import demo_enhance
    from medgen.demo.scans import demo_cohort, demo_io

    sections = [("scan I/O on the built-in MNI152 T1", lambda: demo_io(out, overwrite=overwrite)),
                ("built-in cohort and CT phantom", lambda: demo_cohort(out, overwrite=overwrite)),
                ("denoising and super-resolution of an MNI152 crop", lambda: demo_enhance(out, overwrite=overwrite))]
    if models:
        from medgen.demo.models import demo_models, demo_shipped

        kwargs = {"steps": steps} if steps else {}
        sections.append(("samples of the shipped brain generators (whole head, 3 mm)",
                         lambda: demo_shipped(out, overwrite=overwrite, sample_steps=sample_steps)))
        sections.append(("three generative models on the 3 mm cohort",
                         lambda: demo_models(out, overwrite=overwrite, **kwargs)))
    for title, run in sections:
        console.rule(f"[bold]medgen demo[/bold]: {title}")
        for label, path in run().items():
            console.print(f"  {label:32s} [bold]{path}[/bold]")
    console.print(f"done: everything is in [bold]{out}[/bold]")
