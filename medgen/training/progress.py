"""Progress and logs shared by the engine and :func:`medgen.training.loop.fit`: a rich progress bar
with elapsed time and ETA, and a TensorBoard writer."""

from __future__ import annotations

from pathlib import Path


class ProgressBar:
    """A rich progress bar ``description  ━━━  done/total  elapsed  ETA  text`` (a no-op when
    ``description`` is None or empty)."""

    def __init__(self, description: str | None, total: int, done: int = 0) -> None:
        self.progress = None
        if description:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )

            self.progress = Progress(TextColumn(f"[bold]{description}"), BarColumn(), MofNCompleteColumn(),
                                     TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
                                     TextColumn("{task.fields[text]}"))
            self.progress.start()
            self.task = self.progress.add_task("train", total=total, completed=done, text="")

    def update(self, step: int, text: str = "") -> None:
        if self.progress is not None:
            self.progress.update(self.task, completed=step, text=text)

    def stop(self) -> None:
        if self.progress is not None:
            self.progress.stop()


def tensorboard_writer(log_dir: str | Path | None):
    """A TensorBoard ``SummaryWriter`` on ``log_dir`` (None: no logging, returns None)."""
    if log_dir is None:
        return None
    from torch.utils.tensorboard import SummaryWriter

    return SummaryWriter(log_dir=str(log_dir))
