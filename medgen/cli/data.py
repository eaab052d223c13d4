"""``medgen data export`` and ``medgen data check``: built-in data as files, user folders checked."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from medgen.cli import app

console = Console()
data_app = typer.Typer(
    help="Built-in data (MNI152 brain cohort, CT phantoms) as files, and checks of your own folders.",
    no_args_is_help=True,
)
app.add_typer(data_app, name="data")


@data_app.command()
def export(
    out: Path = typer.Option(..., "--out", help="Output folder (created; must be empty or absent)."),
    subjects: int = typer.Option(10, "--subjects", min=1, help="Number of subjects."),
    resolution: int = typer.Option(3, "--resolution", help="Brain voxel size in mm: 1, 2 or 3 (CT: 2x that)."),
    kind: str = typer.Option("brain", "--kind", help="brain (simulated MR cohort) or ct (CT phantoms with boxes)."),
    seed: int = typer.Option(0, "--seed", help="Cohort seed: same seed, same subjects."),
    contrast: str = typer.Option("t1", "--contrast", help="Brain contrast: t1, t2, pd or random."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing output folder."),
) -> None:
    """Write simulated subjects (images, labels; boxes as JSON for CT) in the layout `medgen` reads back."""
    from medgen.data import export_dataset

    columns = (TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, console=console, transient=True) as progress:
        task = progress.add_task(f"{kind} subjects", total=subjects)
        items = export_dataset(
            out, kind=kind, n_subjects=subjects, resolution=resolution, seed=seed, overwrite=overwrite,
            contrast=contrast, on_subject=lambda done, total: progress.update(task, completed=done),
        )
    console.print(f"wrote {len(items)} {kind} subjects to [bold]{out}[/bold] (index: {out / 'dataset.json'})")


@data_app.command()
def check(
    folder: Path = typer.Argument(..., help="Folder of scans, or one written by `medgen data export`."),
    labels: Path = typer.Option(None, "--labels", help="Folder of label maps matched to the scans by name."),
) -> None:
    """List the subjects medgen finds in a folder (image, label, boxes), as training would see them."""
    from medgen.data import load_folder

    items = load_folder(folder, labels)
    table = Table(title=f"{folder}: {len(items)} subjects")
    for column in ("subject_id", "image", "label", "boxes"):
        table.add_column(column)
    for item in items:
        boxes = str(len(item["boxes"])) if "boxes" in item else "-"
        table.add_row(item["subject_id"], Path(item["image"]).name,
                      Path(item["label"]).name if "label" in item else "-", boxes)
    console.print(table)
