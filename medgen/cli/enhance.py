"""``medgen denoise`` and ``medgen superres``: one scan, or every scan of a folder.

A folder input holding NIfTI/NRRD/MHA/MHD files or DICOM sub-folders is a batch: every scan is
enhanced into the output folder under its own name; an unreadable file is reported and skipped, the
rest carry on, and the exit code is 1 if any was skipped. Any other folder is one DICOM series.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path

import torch
import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from medgen.cli import app
from medgen.enhance.denoise import DEFAULT_REFINE
from medgen.enhance.denoise import denoise as denoise_scan
from medgen.enhance.diffusion_denoise import diffusion_denoise
from medgen.enhance.superres import superres as superres_scan
from medgen.errors import ConfigError, MedgenError, MedgenWarning, ScanValueError, ScanWriteError
from medgen.io import check_save, load_scan, save_scan
from medgen.io.atomic import check_output, full_suffix
from medgen.io.itk import ITK_SUFFIXES
from medgen.io.load import NIFTI_SUFFIXES

console = Console(stderr=True)
_SKIP_SUFFIXES = (".json", ".raw", ".zraw", ".txt", ".csv", ".md")


def batch_inputs(folder: Path) -> list[Path] | None:
    """The scans of a batch folder (files with a scan suffix, DICOM sub-folders, unknown files too,
    so that they are reported), or None when ``folder`` is itself a DICOM series."""
    entries = sorted(p for p in folder.iterdir() if not p.name.startswith("."))
    scans = [p for p in entries if p.is_file() and full_suffix(p) in (*NIFTI_SUFFIXES, *ITK_SUFFIXES)]
    if not scans and not any(p.is_dir() for p in entries):
        return None
    return [p for p in entries if p.is_dir() or full_suffix(p) not in _SKIP_SUFFIXES]


Stages = Callable[[str, int, int], None]


def _run(src: Path, dst: Path, work: Callable[[torch.Tensor, Stages | None], torch.Tensor], overwrite: bool) -> None:
    """Enhance one scan or a batch folder with ``work(scan, progress)``; see the module docstring.

    One scan gets a progress bar per stage that ``work`` reports through ``progress(stage, done, total)``;
    a batch gets one bar over its scans.
    """
    batch = batch_inputs(src) if src.is_dir() else None
    columns = (TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
               TimeElapsedColumn(), TimeRemainingColumn())
    if batch is None:
        check_save(dst, overwrite=overwrite, inputs=[src])
        scan = load_scan(src)
        with Progress(*columns, console=console, transient=True) as progress:
            tasks: dict[str, int] = {}

            def report(stage: str, done: int, total: int) -> None:
                if stage not in tasks:
                    tasks[stage] = progress.add_task(stage, total=total)
                progress.update(tasks[stage], completed=done)

            result = _named(src, work, scan, report)
        out = save_scan(result, dst, overwrite=overwrite, inputs=[src])
        console.print(f"wrote [bold]{out}[/bold]")
        return
    if dst.exists() and not dst.is_dir():
        raise ScanWriteError(dst, "a folder input needs an output folder")
    if dst.resolve() == src.resolve():
        raise ScanWriteError(dst, "output folder is the input folder; choose another")
    check_output(dst, overwrite=True, inputs=[src], is_dir=True)  # scans go inside: an existing folder is fine
    failed: list[str] = []
    with Progress(*columns, console=console) as progress:
        task = progress.add_task("enhancing", total=len(batch))
        for path in batch:
            progress.update(task, description=path.name)
            try:
                target = dst / path.name
                check_save(target, overwrite=overwrite, inputs=[path])
                save_scan(_named(path, work, load_scan(path), None), target, overwrite=overwrite, inputs=[path])
            except MedgenError as err:
                failed.append(str(err))
                progress.console.print(f"[yellow]skipped[/yellow] {err}")
            progress.advance(task)
    console.print(f"{len(batch) - len(failed)} of {len(batch)} scans written to [bold]{dst}[/bold]")
    if failed:
        console.print(f"[red]{len(failed)} skipped:[/red] " + "; ".join(failed))
        raise typer.Exit(1)


def _named(path: Path, work: Callable[[torch.Tensor, Stages | None], torch.Tensor], scan: torch.Tensor,
           progress: Stages | None) -> torch.Tensor:
    """``work(scan, progress)``, with the scan's path put in front of a :class:`ScanValueError` and of
    each :class:`MedgenWarning` (the enhancement API sees arrays, not files), so that every error or
    warning line names the file."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", MedgenWarning)
        try:
            result = work(scan, progress)
        except ScanValueError as err:
            raise ScanValueError(f"{path}: {err}") from err
        finally:
            seen = list(caught)
    for w in seen:
        if issubclass(w.category, MedgenWarning):
            warnings.warn(w.category(f"{path}: {w.message}"), stacklevel=2)
        else:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    return result


def _describe(scan: torch.Tensor) -> str:
    rec = scan.meta["provenance"][-1]
    keys = ("method", "model", "noise", "sigma", "factor", "axis", "steps", "seed")
    return ", ".join(f"{k}={rec[k]:.4g}" if isinstance(rec.get(k), float) else f"{k}={rec[k]}"
                     for k in keys if rec.get(k) is not None)


@app.command()
def denoise(
    src: Path = typer.Argument(..., help="Noisy scan (NIfTI, NRRD/MHA/MHD, DICOM) or a folder of scans."),
    dst: Path = typer.Argument(..., help="Output scan (format from suffix) or output folder."),
    method: str = typer.Option("auto", help="auto (= pretrained), pretrained, adapt, self-supervised (each then "
                               "--refine Wiener passes), diffusion "
                               "(posterior sampling with a diffusion model folder given by --model)."),
    adapt: bool = typer.Option(False, "--adapt", help="Fine-tune the pretrained model on the scan (= --method adapt)."),
    model: str = typer.Option("denoiser3d", help="Shipped model name, or a folder with model.safetensors."),
    noise: str = typer.Option("auto", help="auto, rician (MR), gaussian (CT), poisson (Poisson-Gaussian)."),
    sigma: float = typer.Option(None, help="Noise std in the scan's units (default: estimated)."),
    steps: int = typer.Option(None, help="Self-supervised steps (default 100 for adapt, 400 self-supervised)."),
    seed: int = typer.Option(0, help="Seed of every random choice."),
    flips: int = typer.Option(1, help="Mirrored network passes averaged, 1-8 (after --refine they add < 0.1 dB)."),
    refine: int = typer.Option(DEFAULT_REFINE, help="Collaborative Wiener passes after the network (BM4D's "
                               "second stage); 0: off."),
    samples: int = typer.Option(8, help="Posterior samples of --method diffusion."),
    uncertainty: Path = typer.Option(None, help="With --method diffusion: write the per-voxel posterior std here."),
    device: str = typer.Option("cpu", help="cpu or cuda."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace existing outputs."),
) -> None:
    """Denoise a scan (or a folder): float32 output, same units (HU stays HU) and geometry."""
    chosen = "adapt" if adapt else method
    _check_device(device)
    if uncertainty is not None:
        if chosen != "diffusion":
            raise ConfigError("key 'uncertainty': only --method diffusion gives an uncertainty map")
        if batch_inputs(src) if src.is_dir() else None:
            raise ConfigError("key 'uncertainty': give one scan, not a folder, with --uncertainty")
        check_save(uncertainty, overwrite=overwrite, inputs=[src])

    def work(scan: torch.Tensor, progress: Stages | None) -> torch.Tensor:
        if chosen == "diffusion":
            out, unc = diffusion_denoise(scan, model, sigma=sigma, samples=samples, seed=seed, device=device)
            if uncertainty is not None:
                console.print(f"wrote [bold]{save_scan(unc, uncertainty, overwrite=overwrite, inputs=[src])}[/bold]")
        else:
            out = denoise_scan(scan, method=chosen, model=model, noise=noise, sigma=sigma, steps=steps,
                               seed=seed, flips=flips, refine=refine, device=device, progress=progress)
        console.print(f"denoise: {_describe(out)}")
        return out

    _run(src, dst, work, overwrite)


@app.command()
def superres(
    src: Path = typer.Argument(..., help="Thick-slice scan (NIfTI, NRRD/MHA/MHD, DICOM) or a folder."),
    dst: Path = typer.Argument(..., help="Output scan (format from suffix) or output folder."),
    factor: int = typer.Option(None, help="Integer up-sampling factor along --axis."),
    axis: str = typer.Option(None, help="0/1/2 or x/y/z (array axes); default: the thickest."),
    spacing: str = typer.Option(None, help="Target voxel size in mm, 'X,Y,Z' (instead of --factor)."),
    method: str = typer.Option(
        "auto", help="auto (= pretrained where it knows the factor, adapted to the scan for CT; else smore), "
        "pretrained, adapt (pretrained + fine-tuning on the scan), gan (sharper), smore (self-supervised, any factor), "
        "cubic, linear, nearest."),
    model: str = typer.Option(None, help="Model folder or .safetensors file instead of the shipped network."),
    steps: int = typer.Option(None, help="Optimiser steps on the scan (default: adapt 60, smore 4000 "
                              "(5-10 min on 2 cores), 300 when auto picks smore)."),
    seed: int = typer.Option(0, help="Seed of every random choice."),
    device: str = typer.Option("cpu", help="cpu or cuda."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace existing outputs."),
) -> None:
    """Super-resolve through-plane (--factor F --axis A) or to --spacing X,Y,Z, with exact world geometry."""
    if (factor is None) == (spacing is None):
        raise ConfigError("key 'factor'/'spacing': give exactly one of --factor F or --spacing X,Y,Z")
    axis_index = _parse_axis(axis)
    target = _parse_spacing(spacing) if spacing is not None else None
    _check_device(device)

    def work(scan: torch.Tensor, progress: Stages | None) -> torch.Tensor:
        out = superres_scan(scan, factor=factor, axis=axis_index, spacing=target, method=method, model=model,
                            steps=steps, seed=seed, device=device, progress=progress)
        console.print(f"superres: {_describe(out)}")
        return out

    _run(src, dst, work, overwrite)


def _parse_axis(axis: str | None) -> int | None:
    if axis is None:
        return None
    names = {"0": 0, "1": 1, "2": 2, "x": 0, "y": 1, "z": 2}
    if axis.lower() not in names:
        raise ConfigError(f"key 'axis': '{axis}' is not one of 0, 1, 2, x, y, z")
    return names[axis.lower()]


def _parse_spacing(text: str) -> tuple[float, float, float]:
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        values = ()
    if len(values) != 3:
        raise ConfigError(f"key 'spacing': '{text}' is not three numbers X,Y,Z in mm")
    return values


def _check_device(device: str) -> None:
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError("key 'device': CUDA is not available on this machine; use --device cpu")
