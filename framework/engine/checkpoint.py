"""Checkpoints written atomically and loaded without executing pickled code.

A crash or a full disk while saving must never destroy the previous checkpoint, so we write a temporary file in
the same folder, fsync it and rename it over the old one (rename is atomic on POSIX within one filesystem).
"""
from __future__ import annotations

import errno
import os
import random
import re
import shutil
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
    except (OSError, RuntimeError) as exc:
        # a write failing inside torch.save's zip writer surfaces as a RuntimeError ("unexpected pos …") raised
        # while the OSError is being handled: report the OSError
        cause = find_cause(exc, OSError)
        if cause is None:
            raise
        raise CheckpointError(f"Could not write checkpoint {path}: {_why(cause, path)} The previous {path.name}, if "
                              "any, is intact.") from exc
    return path


def save_converted(model: torch.nn.Module, config: dict[str, Any], classes: list[str], source: str,
                   path: str | os.PathLike) -> Path:
    """Write weights converted from another library (tools/convert_*.py) as a checkpoint of ours: the weights, the
    config to rebuild the model with (tools/test.py, infer, export read it), the class names and where they came
    from; no optimizer state, epoch 0."""
    import time

    return save_checkpoint({"model": model.state_dict(), "optimizer": None, "scheduler": None, "epoch": 0, "iter": 0,
                            "best": {}, "config": config,
                            "meta": {"classes": list(classes), "time": time.strftime("%Y-%m-%d %H:%M:%S"),
                                     "source": source}}, path)


def find_cause(exc: BaseException, types: type[BaseException] | tuple[type[BaseException], ...]) -> Any:
    """The first exception of `types` in `exc`'s chain of causes and contexts (`exc` itself included), or None."""
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        if isinstance(cur, types):
            return cur
        seen.add(id(cur))
        cur = cur.__cause__ or cur.__context__
    return None


def _why(exc: BaseException, path: Path) -> str:
    """What went wrong while writing, with the free space when the disk is (nearly) full."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    full = getattr(exc, "errno", None) in (errno.ENOSPC, errno.EDQUOT) or "No space left" in str(exc)
    if not full:
        return f"{text}."
    try:
        free = shutil.disk_usage(path.parent).free / 2**20
        space = f" ({free:.0f} MiB free on that filesystem)"
    except OSError:
        space = ""
    return (f"the disk is full{space}: {text}. Free some space (old runs in work_dirs/, or fewer epoch_N.pth with "
            "trainer.keep_checkpoints) and resume.")


# Every global a checkpoint of ours refers to: the tensor rebuild functions, storage and dtype names, state dicts'
# OrderedDict. Anything else (`posix.system`, `builtins.eval`, a class of some package) is refused before unpickling;
# `torch.load(weights_only=True)` then enforces torch's own (wider) list as a second wall.
_TORCH_STORAGE_OR_DTYPE = re.compile(r"(\w+Storage|float\d*|bfloat16|half|double|u?int\d+|long|short|bool|"
                                     r"complex\d*|cfloat|cdouble|float8_\w+)")
ALLOWED_GLOBALS: frozenset[str] = frozenset({
    "collections.OrderedDict", "torch._utils._rebuild_tensor_v2", "torch._utils._rebuild_parameter",
    "torch._utils._rebuild_parameter_with_state", "torch.Size", "torch.device", "__builtin__.set", "builtins.set",
})


def _allowed_global(name: str) -> bool:
    module, _, attr = name.rpartition(".")
    return name in ALLOWED_GLOBALS or (module == "torch" and _TORCH_STORAGE_OR_DTYPE.fullmatch(attr) is not None)


def checkpoint_globals(path: str | os.PathLike) -> list[str]:
    """The `module.name` globals the checkpoint's pickle refers to, read with `pickletools` without executing
    anything. Raises CheckpointError for a file that is not a zip-format `torch.save` (what we write), or whose
    pickle names a global in a way we never write (STACK_GLOBAL built from computed strings)."""
    import pickletools
    import zipfile

    path = Path(path)
    try:
        with zipfile.ZipFile(path) as archive:
            pickles = [n for n in archive.namelist() if n.endswith("/data.pkl") or n == "data.pkl"]
            if len(pickles) != 1:
                raise zipfile.BadZipFile("no data.pkl")
            data = archive.read(pickles[0])
    except (zipfile.BadZipFile, OSError, KeyError) as exc:
        from framework.engine.checkpoint_content import describe_bytes  # it needs CheckpointError from here

        raise CheckpointError(
            f"Could not load checkpoint {path}: it is not a checkpoint written by this framework, it holds "
            f"{describe_bytes(path, exc)}. Pass a checkpoint written by tools/train.py (work_dirs/<experiment>/"
            "<time>/checkpoints/best.pth or last.pth); a truncated one cannot be repaired: copy it again if the copy "
            "was cut short, or use another checkpoint of the same run (last.pth, best.pth, epoch_N.pth).") from None
    found: list[str] = []
    strings: list[str] = []
    try:
        for op, arg, _ in pickletools.genops(data):
            if op.name == "GLOBAL":
                found.append(str(arg).replace(" ", "."))
            elif op.name == "STACK_GLOBAL":
                if len(strings) < 2:
                    raise CheckpointError(f"Could not load checkpoint {path}: its pickle names an object in a way this "
                                          "framework never writes; refused for safety (loading it could run code).")
                found.append(f"{strings[-2]}.{strings[-1]}")
            if isinstance(arg, str) and "UNICODE" in op.name:
                strings.append(arg)
    except CheckpointError:
        raise
    except Exception as exc:
        raise CheckpointError(f"Could not load checkpoint {path}: its pickle is corrupt ({exc}).") from None
    return found


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu",
                    purpose: str | None = None) -> dict[str, Any]:
    """Load a checkpoint without ever executing pickled code: its globals must all be in `ALLOWED_GLOBALS` (tensors,
    storages, dtypes, state dicts), then `torch.load(weights_only=True)` reads it. With `purpose` ("model": evaluate,
    infer, export; "resume": continue training) the content is checked too (`check_checkpoint`): a file that loads
    but is not what that purpose needs (a torchvision state dict, an empty dict, a tensor, a checkpoint without its
    training state) is refused with one paragraph saying what it holds and what to do."""
    path = Path(path)
    if not path.is_file():
        hint = ""
        if path.parent.is_dir():
            found = sorted(p.name for p in path.parent.glob("*.pth"))
            hint = f" Checkpoints in {path.parent}: {', '.join(found) or 'none'}."
        raise CheckpointError(f"Checkpoint not found: {path}.{hint}")
    refused = sorted({g for g in checkpoint_globals(path) if not _allowed_global(g)})
    if refused:
        raise CheckpointError(
            f"Refused to load checkpoint {path}: it refers to {', '.join(refused[:5])}"
            f"{' …' if len(refused) > 5 else ''}, which a checkpoint of this framework never holds (only tensors, "
            "numbers, strings and containers). Unpickling it could run arbitrary code, so it was not loaded. If it "
            "comes from another library, convert its weights with that library first.")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:
        lines = [ln.strip() for ln in re.sub(r"\x1b\[[0-9;]*m", "", str(exc)).splitlines() if ln.strip()]
        reason = next((ln for ln in lines if "Unsupported global" in ln), lines[0] if lines else type(exc).__name__)
        raise CheckpointError(
            f"Could not load checkpoint {path}: {reason} It is not a checkpoint written by this "
            "framework, it is truncated, or it holds objects other than tensors and plain containers (refused for "
            "safety)."
        ) from exc
    if purpose is not None:
        from framework.engine.checkpoint_content import check_checkpoint  # it needs CheckpointError from here

        check_checkpoint(ckpt, path, purpose)
    return ckpt


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
