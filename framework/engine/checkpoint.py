"""Checkpoints written atomically and loaded without executing pickled code.

A crash or a full disk while saving must never destroy the previous checkpoint, so we write a temporary file in
the same folder, fsync it and rename it over the old one (rename is atomic on POSIX within one filesystem).
"""
from __future__ import annotations

import os
import random
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch

from framework.fileio import atomic_write


class CheckpointError(RuntimeError):
    pass


def save_checkpoint(state: dict[str, Any], path: str | os.PathLike) -> Path:
    path = Path(path)
    try:
        with atomic_write(path) as f:
            torch.save(state, f)
    except OSError as exc:
        raise CheckpointError(f"Could not write checkpoint {path}: {exc}. The previous file, if any, is intact.") from exc
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


def rng_state() -> dict[str, Any]:
    """Every random generator the training loop draws from, in a form `torch.load(weights_only=True)` accepts
    (numpy's state is converted from its ndarray to a tensor)."""
    bit_generator, key, pos, has_gauss, gauss = np.random.get_state(legacy=True)
    return {
        "python": random.getstate(),
        "numpy": {"bit_generator": bit_generator, "key": torch.from_numpy(key.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "gauss": float(gauss)},
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(_tuples(state["python"]))
    n = state["numpy"]
    np.random.set_state((n["bit_generator"], n["key"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    torch.set_rng_state(state["torch"])
    if state.get("cuda") and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])


def _tuples(value: Any) -> Any:
    """`random.setstate` wants tuples; a checkpoint may hand back lists."""
    return tuple(_tuples(v) for v in value) if isinstance(value, (list, tuple)) else value


def find_last_checkpoint(experiment_dir: str | os.PathLike, exclude: str | os.PathLike | None = None) -> Path | None:
    """The most recently written `last.pth` among an experiment's runs (`work_dirs/<experiment>/*/checkpoints/`),
    skipping the run folder `exclude` (the one just created for the resumed run)."""
    root = Path(experiment_dir)
    skip = Path(exclude).resolve() if exclude is not None else None
    found = [p for p in root.glob("**/checkpoints/last.pth") if skip is None or skip not in p.resolve().parents]
    return max(found, key=lambda p: p.stat().st_mtime, default=None)


def prune_checkpoints(folder: str | os.PathLike, keep: int | None, pattern: str = "epoch_*.pth") -> list[Path]:
    """Delete all but the `keep` newest `epoch_N.pth` (by N); returns what was deleted."""
    if keep is None:
        return []
    numbered = sorted(Path(folder).glob(pattern), key=lambda p: int(re.sub(r"\D", "", p.stem) or 0))
    doomed = numbered[:-keep] if keep > 0 else numbered
    for p in doomed:
        p.unlink(missing_ok=True)
    return doomed
