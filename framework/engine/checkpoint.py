"""Checkpoints written atomically and loaded without executing pickled code.

A crash or a full disk while saving must never destroy the previous checkpoint, so we write a temporary file in
the same folder, fsync it and rename it over the old one (rename is atomic on POSIX within one filesystem).
"""
from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path
from typing import Any

import torch


class CheckpointError(RuntimeError):
    pass


def save_checkpoint(state: dict[str, Any], path: str | os.PathLike) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise CheckpointError(f"Could not write checkpoint {path}: {exc}. The previous file, if any, is intact.") from exc
        raise
    try:  # make the rename itself durable
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError:
        pass
    return path


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load with `weights_only=True`: only tensors and plain containers, never arbitrary pickled objects."""
    path = Path(path)
    if not path.is_file():
        hint = ""
        if path.parent.is_dir():
            found = sorted(p.name for p in path.parent.glob("*.pth"))
            hint = f" Checkpoints in {path.parent}: {', '.join(found) or 'none'}."
        raise CheckpointError(f"Checkpoint not found: {path}.{hint}")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:
        lines = [ln.strip() for ln in re.sub(r"\x1b\[[0-9;]*m", "", str(exc)).splitlines() if ln.strip()]
        reason = next((ln for ln in lines if "Unsupported global" in ln), lines[0] if lines else type(exc).__name__)
        raise CheckpointError(
            f"Could not load checkpoint {path}: {reason} It is not a checkpoint written by this "
            "framework, it is truncated, or it holds objects other than tensors and plain containers (refused for "
            "safety)."
        ) from exc
