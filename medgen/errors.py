"""medgen's error hierarchy.

Every error a user can cause is a :class:`MedgenError`; its message is one line that names the file
or config key and the problem. The CLI prints it and exits non-zero, without a traceback.
"""

from __future__ import annotations

from pathlib import Path


class MedgenError(Exception):
    """Base class of every error medgen raises on purpose."""


class ScanReadError(MedgenError):
    """A scan could not be read: missing, truncated, not an image, inconsistent geometry."""

    def __init__(self, path: str | Path, problem: str) -> None:
        self.path = str(path)
        self.problem = " ".join(problem.split())  # one line, even when a library's reason has several
        super().__init__(f"{path}: {self.problem}")


class ScanWriteError(MedgenError):
    """A scan could not be written: existing output, output equal to input, unsupported format."""

    def __init__(self, path: str | Path, problem: str) -> None:
        self.path = str(path)
        self.problem = " ".join(problem.split())  # one line, even when a library's reason has several
        super().__init__(f"{path}: {self.problem}")


class ConfigError(MedgenError):
    """A configuration value is missing, unknown or of the wrong type; the message names the key."""


class DataError(MedgenError):
    """A dataset folder or built-in data source is unusable."""


class ScanValueError(MedgenError):
    """A scan's values cannot be processed: NaN or Inf voxels, or too little signal to estimate its noise
    level (constant, zero-filled or tiny). The message says what to give instead (e.g. ``--sigma``)."""


class MedgenWarning(UserWarning):
    """A problem medgen worked around in a documented way; the message names the file and what was done.

    The CLI prints it as one ``warning: ...`` line.
    """
