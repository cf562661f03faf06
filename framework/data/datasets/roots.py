"""One message for a dataset path that does not exist, shared by every loader.

A mistyped `dataset.root` is the most common first-run failure; saying only "does not exist" leaves the user to
find which part of the path is wrong. The message names the path, the deepest folder of it that does exist, and
the entries there whose names are close to the missing one ("did you mean").
"""
from __future__ import annotations

import difflib
import os
from pathlib import Path

from framework.data.errors import DatasetNotFoundError

__all__ = ["check_exists", "missing_path_error", "nearest_existing"]


def _absolute(path: str | Path) -> Path:
    """`path` made absolute against the working directory, `..` and `.` folded (symlinks are not followed: the
    message shows the path as the user wrote it)."""
    return Path(os.path.abspath(Path(path).expanduser()))


def nearest_existing(path: str | Path) -> Path:
    """The deepest ancestor of `path` (or `path` itself) that exists; `.` for a relative path none of whose parts
    exist."""
    p = _absolute(path)
    for candidate in (p, *p.parents):
        if candidate.exists():
            return candidate
    return Path(".").absolute()


def missing_path_error(path: str | Path, what: str = "Dataset root", hint: str = "") -> DatasetNotFoundError:
    """A `DatasetNotFoundError` naming `path`, the nearest existing folder and its close-named entries. Callers
    raise it when their check of `path` failed: a `path` that exists is the wrong kind (a file where a folder is
    expected, or the reverse), and the message says so."""
    p = Path(path).expanduser()
    near = nearest_existing(p)
    absolute = _absolute(p)
    if p.exists():
        kind = "a folder, not a file" if p.is_dir() else "a file, not a folder"
        lines = [f"{what} {p} is {kind}."]
    else:
        lines = [f"{what} {p} does not exist."]
    if near != absolute:
        rest = absolute.relative_to(near).parts
        missing = rest[0] if rest else p.name
        lines.append(f"The nearest existing {'folder' if near.is_dir() else 'file'} is {near}")
        try:
            names = sorted(e.name for e in near.iterdir() if not e.name.startswith(".")) if near.is_dir() else None
        except OSError:  # unreadable (permissions): its name alone still helps
            names = None
        close = difflib.get_close_matches(missing, names or [], n=3, cutoff=0.6)
        if close:
            lines[-1] += f"; did you mean {' or '.join(str(near / c) for c in close)}?"
        elif names:
            shown = ", ".join(names[:12]) + (", …" if len(names) > 12 else "")
            lines[-1] += f", which holds: {shown}."
        else:
            lines[-1] += " (empty)." if names == [] else "."
    if hint:
        lines.append(hint)
    return DatasetNotFoundError("\n".join(lines))


def check_exists(path: str | Path, what: str = "Dataset root", hint: str = "") -> Path:
    """`path` as a Path when it exists, else raise `missing_path_error`."""
    p = Path(path).expanduser()
    if not p.exists():
        raise missing_path_error(p, what, hint)
    return p
