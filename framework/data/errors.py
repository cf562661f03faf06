"""Errors a dataset reports about the user's files: they name the file (and the position or image id) and say
how to fix it, and the command-line tools print them without a traceback (framework/config/cli.py)."""
from __future__ import annotations

import re
from pathlib import Path

_ADVICE = ("Fix or remove the file, run `python tools/check_dataset.py dataset=…` to list every bad image, or set "
           "dataset.on_bad_image=skip to train without them.")
# The last "…BadImageError: Bad image <path>: <reason>. <advice>" of a formatted traceback.
_IN_TRACEBACK = re.compile(r".*BadImageError: Bad image (?P<path>.+?): (?P<reason>.*)\. " + re.escape(_ADVICE),
                           re.DOTALL)


class DatasetError(ValueError):
    """A malformed annotation file, an inconsistent dataset, or a bad image."""


class DatasetNotFoundError(FileNotFoundError):
    """A dataset folder or file is missing.

    Subclasses ``FileNotFoundError`` so generic handlers still catch it, while the message carries the expected
    layout and the config override that fixes it: the most common first-run failure is simply a wrong
    ``dataset.root``. Defined here, below every loader, so that `framework.data.datasets.roots` (which builds the
    message) and the loaders can both use it; ``framework.data.datasets.coco`` re-exports it.
    """


class BadImageError(DatasetError):
    """An image file that is missing, empty, truncated or cannot be decoded; `path` names it.

    `BadImageError(path, reason)`. A loader worker's exception reaches the main process as
    `type(exc)(formatted worker traceback)` (torch's `ExceptionWrapper.reraise`; an exception it cannot build that
    way becomes a RuntimeError, which the tools would print with a traceback): given that one argument, the path
    and reason are read back from the traceback's last line, so the main process raises the worker's error as it
    was, message and `path` included.
    """

    def __init__(self, path: str | Path, reason: str | None = None) -> None:
        if reason is None:
            found = _IN_TRACEBACK.match(str(path))
            path, reason = (found["path"], found["reason"]) if found else ("<unknown file>", str(path).strip())
        self.path, self.reason = Path(path), reason
        super().__init__(f"Bad image {path}: {reason}. {_ADVICE}")

    def __reduce__(self):  # pickled by multiprocessing (e.g. a process pool), kept whole
        return type(self), (self.path, self.reason)
