"""The ``medgen`` command line: a thin layer over the Python API.

Every command lives in its own module of this package and registers itself on :data:`app`.
A :class:`~medgen.errors.MedgenError` raised anywhere becomes one line on stderr and exit code 1.
"""

from __future__ import annotations

import sys
import warnings

import typer
from typer.core import TyperGroup

import medgen
from medgen.errors import MedgenError, MedgenWarning


class _MedgenGroup(TyperGroup):
    """Turns medgen's own errors into a one-line message and exit code 1, with no traceback, and its
    warnings into one ``warning: ...`` line each."""

    def invoke(self, ctx):  # noqa: D102
        with warnings.catch_warnings():
            warnings.simplefilter("always", MedgenWarning)
            warnings.showwarning = _show_warning
            try:
                return super().invoke(ctx)
            except MedgenError as err:
                typer.secho(f"error: {err}", fg="red", err=True)
                raise typer.Exit(1) from None


_python_showwarning = warnings.showwarning


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    if issubclass(category, MedgenWarning):
        typer.secho(f"warning: {message}", fg="yellow", err=True)
    else:
        _python_showwarning(message, category, filename, lineno, file, line)


app = typer.Typer(
    cls=_MedgenGroup,
    name="medgen",
    help="medgen: 3D generative models for medical-image denoising, super-resolution, synthesis and "
    "MONAI augmentation.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
)


def _version(value: bool) -> None:
    if value:
        from medgen.versions import below_floors, versions

        typer.echo(f"medgen {medgen.__version__}")
        for name, version in versions().items():
            if name != "medgen":
                typer.echo(f"  {name} {version}")
        for problem in below_floors():
            typer.secho(f"warning: {problem}", fg="yellow", err=True)
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                 help="Show the versions of medgen, Python, torch, MONAI, pydicom, nibabel, "
                                 "SimpleITK and NumPy."),
) -> None:
    """medgen: 3D generative models for medical imaging, built on MONAI."""


# Command modules register themselves on `app` when imported (one line each, in data-flow order).
from medgen.cli import io_cmds  # noqa: E402,F401
from medgen.cli import demo  # noqa: E402,F401

# -- command modules added by later features go below this line --
from medgen.cli import enhance  # noqa: E402,F401
from medgen.cli import data  # noqa: E402,F401
from medgen.cli import train  # noqa: E402,F401
from medgen.cli import synthesize  # noqa: E402,F401
from medgen.cli import evaluate  # noqa: E402,F401
from medgen.cli import models  # noqa: E402,F401


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point."""
    app(args=argv if argv is not None else sys.argv[1:], prog_name="medgen")
