"""``medgen models``: the shipped models (:func:`medgen.models.hub.list_models`), or one model's card."""

from __future__ import annotations

import json

import typer
from rich.console import Console
from rich.markdown import Markdown
from rich.table import Table

from medgen.cli import app

console = Console()


@app.command()
def models(
    name: str = typer.Argument(None, help="A shipped model name or a model folder: show its card."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """List the shipped models: task, size on disk, grid and spacing, headline metrics of their cards."""
    from medgen.models.hub import list_models, model_info

    infos = [model_info(name)] if name else list_models()
    if as_json:
        typer.echo(json.dumps([info.to_json() for info in infos], indent=2, ensure_ascii=False))
        return
    table = Table(title="medgen models (load with medgen.load_model(NAME))" if not name else None)
    for column in ("name", "task", "MB", "grid", "spacing (mm)", "metrics (card.json)"):
        table.add_column(column, justify="right" if column == "MB" else "left")
    for info in infos:
        grid = "×".join(map(str, info.grid)) if info.grid else "any"
        if info.task == "features" and info.grid:
            grid += " (resized)"
        if info.factors:
            grid += f"; ×{', '.join(map(str, info.factors))} along one axis"
        spacing = "×".join(f"{s:g}" for s in info.spacing) if info.spacing else "any"
        metrics = "\n".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in info.metrics.items())
        table.add_row(info.name, info.task, f"{info.size_mb:.1f}", grid, spacing, metrics or "-")
    console.print(table)
    if name:
        card = infos[0].path / "model_card.md"
        console.print(f"[bold]{infos[0].path}[/bold]")
        if card.is_file():
            console.print(Markdown(card.read_text()))
