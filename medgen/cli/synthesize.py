"""``medgen synthesize MODEL_DIR``: write synthetic NIfTI volumes from a trained model."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

from medgen.cli import app

console = Console()
SAVE_EVERY = 16
"""Volumes drawn between saves: a multiple of every automatic batch size, so samples do not change."""


@app.command()
def synthesize(
    model_dir: Path = typer.Argument(..., help="Model folder written by medgen train (RUN/model), or a "
                                     "shipped model's name: brain-rflow, brain-ldm, brain-vae, brain-labels "
                                     "(with --condition), ct-lesions (medgen models)."),
    num: int = typer.Option(1, "--num", min=1, help="Number of volumes."),
    out: Path = typer.Option(..., "--out", help="Output folder for sample_XXX.nii.gz (or the pool folder)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the first sample (sample i uses seed + i)."),
    sampler: str | None = typer.Option(None, "--sampler", help="Diffusion: ddpm, ddim or rflow."),
    steps: int | None = typer.Option(None, "--steps", help="Diffusion sampling steps."),
    condition: str | None = typer.Option(None, "--condition", help="Vector like 0,1 or a label-map file."),
    guidance: float = typer.Option(1.0, "--guidance", help="Classifier-free guidance scale."),
    device: str = typer.Option("auto", "--device", help="cpu, cuda or auto."),
    pool: bool = typer.Option(False, "--pool", help="Write a synthetic pool (images/, labels/, dataset.json) "
                              "that SyntheticPoolDataset and MixedDataset serve."),
    labels: Path | None = typer.Option(None, "--labels", help="Pool of a label-conditioned model: labelled "
                                       "cases to deform (a 'medgen data export' folder; default: built-in cohort)."),
    strength: float = typer.Option(0.5, "--strength", help="Pool: deformation strength of the label maps."),
    lesions: int = typer.Option(0, "--lesions", min=0, help="Pool of a label-conditioned diffusion model: insert "
                                "this many inpainted lesions into each real case of --labels (labels, boxes follow)."),
    lesion_label: int | None = typer.Option(None, "--lesion-label", help="Label value of inserted lesions "
                                            "(default: the model's last class)."),
    host_labels: str | None = typer.Option(None, "--host-labels", help="Labels lesions may grow in, e.g. 4,5,6 "
                                           "(default: any foreground)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace existing samples."),
) -> None:
    """Sample NIfTI volumes marked synthetic (model, seed, sampler, steps in their metadata), or a pool."""
    from medgen.models.hub import load_generative
    from medgen.synthesize import parse_condition, save_samples
    from medgen.synthesize import synthesize as draw
    from medgen.synthesize.save import sample_paths
    from medgen.training.distributed import resolve_device

    if pool:
        hosts = _int_list(host_labels, "host-labels") if host_labels else None
        _write_pool(model_dir, out, num, seed, sampler, steps, labels, strength, resolve_device(device), overwrite,
                    lesions=lesions, lesion_label=lesion_label, host_labels=hosts)
        return
    sample_paths(out, num, overwrite=overwrite)  # before any work: nothing is overwritten, nothing escapes --out
    cond = parse_condition(condition)
    model = load_generative(model_dir, device=resolve_device(device))
    written = []
    with _progress() as bar:
        task = bar.add_task("", total=num)
        for start in range(0, num, SAVE_EVERY):  # saved as drawn: memory holds SAVE_EVERY volumes, not num
            scans = draw(model, min(SAVE_EVERY, num - start), seed=seed + start, sampler=sampler, steps=steps,
                         condition=cond, guidance=guidance,
                         progress=lambda i, n, done=start: bar.update(task, completed=done + i))
            written += save_samples(scans, out, overwrite=overwrite, first_index=start)
    for path in written:
        console.print(f"  [bold]{path}[/bold]")


def _int_list(text: str, key: str) -> list[int]:
    from medgen.errors import ConfigError

    try:
        return [int(v) for v in text.split(",")]
    except ValueError:
        raise ConfigError(f"key '{key}': expected integers like 4,5,6, got '{text}'") from None


def _progress():
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    return Progress(TextColumn("synthesize"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())


def _write_pool(model_dir: Path, out: Path, num: int, seed: int, sampler: str | None, steps: int | None,
                labels: Path | None, strength: float, device: str, overwrite: bool, **lesion_options) -> None:
    from medgen.augment import write_model_pool
    from medgen.augment._lazy_model import LazyModel
    from medgen.data import brain_cohort, ct_cohort, load_folder
    from medgen.io.atomic import check_output

    check_output(out, overwrite=overwrite, is_dir=True)
    loaded = LazyModel(model_dir, device).get()
    items: list[dict] = []
    if loaded.config.label_classes:
        if labels is not None:
            items = load_folder(labels, load=True)
        elif loaded.reference.get("modality") == "CT":
            console.print("labels: the built-in CT phantoms (10 cases); --labels DIR for your own")
            items = ct_cohort(10, seed=seed)
        else:
            console.print("labels: the built-in cohort (10 subjects, 3 mm); --labels DIR for your own")
            items = brain_cohort(10, resolution=3, seed=seed)
    with _progress() as bar:
        task = bar.add_task("", total=num)
        folder = write_model_pool(model_dir, out, num, labels=items, seed=seed, strength=strength, sampler=sampler,
                                  steps=steps, device=device, overwrite=overwrite,
                                  progress=lambda i, n: bar.update(task, completed=i), **lesion_options)
    console.print(f"  [bold]{folder}[/bold]  ({num} cases; serve with medgen.augment.SyntheticPoolDataset)")
