"""``medgen info`` and ``medgen convert``."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from medgen.cli import app
from medgen.io import check_save, load_scan, save_scan, scan_info
from medgen.io.provenance import mark
from medgen.versions import versions

console = Console()


@app.command()
def info(
    scan: Path = typer.Argument(..., help="Scan file or DICOM series folder."),
    series_uid: str = typer.Option(None, help="SeriesInstanceUID, for a DICOM folder with several series."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """Show a scan's shape, spacing (mm), orientation, intensity statistics and modality."""
    details = scan_info(load_scan(scan, series_uid=series_uid))
    details["software"] = versions()  # a bug report pasted from `medgen info` carries the versions
    if as_json:
        typer.echo(json.dumps(details, indent=2, default=str))
        return
    table = Table(title=str(scan), show_header=False)
    for key, value in details.items():
        if key == "provenance":
            value = "; ".join(p.get("operation", "") for p in value) or "-"
        elif key == "software":
            value = ", ".join(f"{k} {v}" for k, v in value.items())
        table.add_row(key, str(value))
    console.print(table)


@app.command()
def convert(
    src: Path = typer.Argument(..., help="Input scan (NIfTI, NRRD/MHA/MHD, DICOM folder or file)."),
    dst: Path = typer.Argument(..., help="Output: .nii/.nii.gz, .nrrd, .mha, .mhd, or a folder for DICOM."),
    series_uid: str = typer.Option(None, help="SeriesInstanceUID, for a DICOM folder with several series."),
    dtype: str = typer.Option(None, help="On-disk voxel type, e.g. int16, uint8, float32 (default: keep)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing output."),
) -> None:
    """Convert a scan between formats, keeping its world geometry and metadata."""
    check_save(dst, overwrite=overwrite, inputs=[src])
    scan = load_scan(src, series_uid=series_uid)
    scan = mark(scan, "convert", synthetic=False, source=str(src))
    out = save_scan(scan, dst, dtype=dtype, overwrite=overwrite, inputs=[src])
    console.print(f"wrote [bold]{out}[/bold]")
