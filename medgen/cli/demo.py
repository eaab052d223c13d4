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
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace outputs of an earlier demo."),
) -> None:
    """Run medgen on the built-in data (MNI152 brain): scan I/O in every format and PNG montages."""
    from medgen.demo import demo_io

    console.rule("[bold]medgen demo[/bold]: scan I/O on the built-in MNI152 T1")
    for label, path in demo_io(out, overwrite=overwrite).items():
        console.print(f"  {label:32s} [bold]{path}[/bold]")
    console.print(f"done: everything is in [bold]{out}[/bold]")
