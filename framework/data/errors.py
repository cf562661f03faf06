"""Errors a dataset reports about the user's files: they name the file (and the position or image id) and say
how to fix it, and the command-line tools print them without a traceback (framework/config/cli.py)."""
from __future__ import annotations

from pathlib import Path


class DatasetError(ValueError):
    """A malformed annotation file, an inconsistent dataset, or a bad image."""


class BadImageError(DatasetError):
    """An image file that is missing, empty, truncated or cannot be decoded; `path` names it."""

    def __init__(self, path: str | Path, reason: str) -> None:
        self.path, self.reason = Path(path), reason
        super().__init__(f"Bad image {path}: {reason}. Fix or remove the file, run `python tools/check_dataset.py "
                         "dataset=…` to list every bad image, or set dataset.on_bad_image=skip to train without them.")

    def __reduce__(self):  # raised in loader workers and re-raised in the main process
        return type(self), (self.path, self.reason)
