"""``medgen evaluate``, ``medgen report`` and ``medgen qc``: what a generated or enhanced scan is worth."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from medgen.cli import app

console = Console()
qc_app = typer.Typer(help="Quality control: flag scans outside the real data's range; check enhancements per region.",
                     no_args_is_help=True)
app.add_typer(qc_app, name="qc")


@app.command()
def evaluate(
    real: Path = typer.Option(..., "--real", help="Folder of real scans (NIfTI/NRRD/MHA)."),
    synthetic: Path = typer.Option(..., "--synthetic", help="Folder of synthetic scans."),
    out: Path = typer.Option(..., "--out", help="Output folder for index.html, figures/ and metrics.json."),
    enhanced: Path = typer.Option(None, "--enhanced", help="Folder of enhanced scans (names match --inputs/--real)."),
    inputs: Path = typer.Option(None, "--inputs", help="Folder of the enhancement inputs (same names as --enhanced)."),
    training: Path = typer.Option(None, "--training", help="The model's training scans for the privacy audit "
                                  "(default: --real)."),
    features: Path = typer.Option(None, "--features", help="Local MedicalNet/RadImageNet weights for FID/MMD "
                                  "(default: medgen's shipped self-supervised network)."),
    downstream: bool = typer.Option(False, "--downstream", help="Also train a small segmentation UNet on the "
                                    "synthetic image/label pairs and test it on held-out real scans (TSTR Dice); "
                                    "--real and --synthetic then need labels (images/ + labels/, as 'medgen data "
                                    "export' writes)."),
    downstream_steps: int = typer.Option(150, help="Training steps per segmenter for --downstream."),
    downstream_roi: int = typer.Option(48, help="Crop side (voxels) the --downstream segmenters train on."),
) -> None:
    """Compare synthetic (and enhanced) scans with real ones and write an HTML report."""
    from medgen.evaluate.suite import evaluate_sets, load_folder, write_evaluation_report

    with console.status("loading scans"):
        labelled = (_labelled(synthetic), _labelled(real)) if downstream else None  # (synthetic, real) items
        if labelled:
            syn_set, real_set = [[(it["subject_id"], it["image"]) for it in group] for group in labelled]
        else:
            real_set, syn_set = load_folder(real), load_folder(synthetic)
        enh_set = load_folder(enhanced) if enhanced else []
        in_set = load_folder(inputs) if inputs else []
        train_set = load_folder(training) if training else None
    with console.status("computing metrics, QC flow, memorisation audit" + (", TSTR Dice" if downstream else "")):
        results = evaluate_sets(real_set, syn_set, enhanced=enh_set, inputs=in_set, training=train_set,
                                features=features, downstream=labelled,
                                downstream_steps=downstream_steps, downstream_roi=(downstream_roi,) * 3)
    with console.status("writing the report"):
        page = write_evaluation_report(results, real_set, syn_set, out, enhanced=enh_set, inputs=in_set)
    table = Table(title=f"features: {results['features']}")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for row in results["metrics"]:
        value = f"{row['value']:.4g}" if row["value"] is not None else f"not computed: {row['reason']}"
        table.add_row(row["metric"], value)
    console.print(table)
    if "downstream" in results:
        tstr = Table(title=f"TSTR Dice on {results['downstream']['n_test']} held-out real scans")
        for col in ("train on", "n_train", "CSF", "GM", "WM", "mean", "vs real"):
            tstr.add_column(col, justify="left" if col == "train on" else "right")
        for row in results["downstream"]["rows"]:
            tstr.add_row(row["train on"], str(row["n_train"]),
                         *[f"{row[c]:.3f}" for c in ("CSF", "GM", "WM", "mean", "vs real")])
        console.print(tstr)
    flagged = [r["name"] for r in results["qc"] if r["flag"]]
    console.print(f"QC flags: {', '.join(flagged) or 'none'}; near-copies: "
                  f"{', '.join(results['privacy']['flagged']) or 'none'}")
    console.print(f"wrote [bold]{page}[/bold]")


def _labelled(folder: Path) -> list[dict]:
    """Image/label items of ``folder`` (``medgen.data.load_folder``, loaded)."""
    from medgen.data import load_folder as load_items

    return load_items(folder, load=True)


@app.command()
def report(
    run_dir: Path = typer.Argument(..., help="A training run folder (TensorBoard logs, config.yaml, samples)."),
    out: Path = typer.Option(..., "--out", help="Output folder for index.html and figures/."),
) -> None:
    """Write an HTML report of a training run: curves from its logs, config, samples, model card."""
    from medgen.evaluate.suite import write_run_report

    console.print(f"wrote [bold]{write_run_report(run_dir, out)}[/bold]")


@qc_app.command("fit")
def qc_fit(
    real: Path = typer.Option(..., "--real", help="Folder of real scans the flow learns from (half calibrates)."),
    out: Path = typer.Option(..., "--out", help="Output QC model folder (flow.safetensors + qc.json)."),
    steps: int = typer.Option(400, help="Flow training steps."),
    patch: int = typer.Option(4, help="Patch side in voxels."),
    factor: int = typer.Option(1, help="Block-average factor before patching (e.g. 2 or 3 for 1 mm scans)."),
    seed: int = typer.Option(0, help="Random seed."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing QC model folder."),
) -> None:
    """Fit a patch normalizing flow on real scans and calibrate its flags on held-out real scans."""
    from medgen.evaluate.qc import fit_qc
    from medgen.evaluate.suite import load_folder

    scans = [s for _, s in load_folder(real)]
    with console.status("fitting the flow"):
        model = fit_qc(scans, steps=steps, patch=patch, factor=factor, seed=seed)
    model.save(out, overwrite=overwrite)
    console.print(f"typical score {model.score_lower:.3f} to {model.score_upper:.3f} nats/voxel; "
                  f"wrote [bold]{out}[/bold]")


@qc_app.command("check")
def qc_check(
    scans: list[Path] = typer.Argument(..., help="Scan files, or folders of scans, to check."),
    model: Path = typer.Option(None, "--model", help="QC model folder from 'medgen qc fit'."),
    real: Path = typer.Option(None, "--real", help="Or: folder of real scans to fit a QC model on now."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Flag scans (synthetic, enhanced, or real inputs for a model) outside the real data's range. Exit 2 if any."""
    from medgen.errors import ConfigError
    from medgen.evaluate.qc import FlowQC, fit_qc
    from medgen.evaluate.suite import load_folder
    from medgen.io import load_scan

    if (model is None) == (real is None):
        raise ConfigError("give exactly one of --model (a QC model folder) or --real (real scans to fit on)")
    qc = FlowQC.load(model) if model else fit_qc([s for _, s in load_folder(real)])
    named = []
    for path in scans:
        named += load_folder(path) if path.is_dir() else [(path.name, load_scan(path))]
    results = qc.check([s for _, s in named], [n for n, _ in named])
    if as_json:
        typer.echo(json.dumps(results, indent=2))
    else:
        table = Table()
        for col in ("scan", "score", "atypical", "ood", "flag"):
            table.add_column(col)
        for r in results:
            table.add_row(r["name"], f"{r['score']:.3f}", f"{100 * r['atypical']:.1f}%", f"{r['ood']:.2f}",
                          "[red]FLAG[/red] " + "; ".join(r["reasons"]) if r["flag"] else "ok")
        console.print(table)
    if any(r["flag"] for r in results):
        raise typer.Exit(2)


@qc_app.command("artifacts")
def qc_artifacts(
    scans: list[Path] = typer.Argument(..., help="Scan files, or folders of scans, to check."),
    modality: str = typer.Option("", help="CT or MR (default: the scan's own metadata; CT is also "
                                 "recognised from values in HU)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Reference-free artefact flags (blur, ghosting, motion, intensity scaling); no QC model needed. Exit 2 if any."""
    from medgen.evaluate.artifacts import ARTIFACTS, check_scan
    from medgen.evaluate.suite import load_folder
    from medgen.io import load_scan

    named = []
    for path in scans:
        named += load_folder(path) if path.is_dir() else [(path.name, load_scan(path))]
    reports = [(name, check_scan(scan, modality=modality)) for name, scan in named]
    if as_json:
        typer.echo(json.dumps([{"name": name, **r.as_dict()} for name, r in reports], indent=2))
    else:
        table = Table()
        for col in ("scan", *ARTIFACTS, "flag"):
            table.add_column(col)
        for name, r in reports:
            table.add_row(name, *[f"{r.scores[a]:.2f}" for a in ARTIFACTS],
                          "[red]FLAG[/red] " + "; ".join(r.reasons) if r.flags else "ok")
        console.print(table)
    if any(r.flags for _, r in reports):
        raise typer.Exit(2)


@qc_app.command("diff")
def qc_diff(
    input: Path = typer.Argument(..., help="Enhancement input scan."),
    output: Path = typer.Argument(..., help="Enhanced scan (same grid)."),
    labels: Path = typer.Option(None, "--labels", help="Label map for regions (default: 8 octants)."),
    uncertainty: Path = typer.Option(None, "--uncertainty", help="Uncertainty map (e.g. std over diffusion samples)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Hallucination check: what an enhancement changed, per region, against the input's noise level."""
    from medgen.evaluate.qc import region_differences
    from medgen.io import load_scan

    rows = region_differences(load_scan(input), load_scan(output), labels=load_scan(labels) if labels else None,
                              uncertainty=load_scan(uncertainty) if uncertainty else None)
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    table = Table()
    cols = ["region", "volume_ml", "mean_abs", "p99_abs", "mean_abs_sigma", "p99_abs_sigma"]
    cols += ["uncertainty_mean"] if uncertainty else []
    for col in cols + ["flag"]:
        table.add_column(col)
    for r in rows:
        table.add_row(*[f"{r[c]:.3g}" if isinstance(r[c], float) else str(r[c]) for c in cols],
                      "[red]FLAG[/red]" if r["flag"] else "ok")
    console.print(table)
