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
        raise CheckpointError(
            f"Could not load checkpoint {path}: it is not a checkpoint written by this framework, it holds "
            f"{_describe_bytes(path, exc)}. Pass a checkpoint written by tools/train.py (work_dirs/<experiment>/"
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


def _describe_bytes(path: Path, exc: BaseException) -> str:
    """What a file that is not a torch.save zip archive holds, from its first bytes."""
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            head = f.read(512)
    except OSError as err:
        return f"nothing readable ({err})"
    if size == 0:
        return "nothing (an empty file, 0 bytes)"
    if head.startswith(b"PK"):
        return (f"a zip archive that is truncated or damaged ({size} bytes; {exc}), e.g. a copy or download cut "
                "short, or a save interrupted by a crash")
    if head.startswith(b"\x80") and b"\x8a\x0a" in head[:8]:
        return f"a torch.save file in PyTorch's legacy (pre-1.6, non-zip) format ({size} bytes), which is not read"
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    if text is not None and all(ch.isprintable() or ch in "\n\r\t" for ch in text):
        first = text.strip().splitlines()[0][:60] if text.strip() else ""
        return f"text ({size} bytes, starting {first!r})"
    return f"binary data that is not a torch.save zip archive ({size} bytes, starting {head[:8].hex(' ')})"


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
        check_checkpoint(ckpt, path, purpose)
    return ckpt


# ------------------------------------------------------------------------------ what a loaded file holds
MODEL_KEYS = ("model", "config")  # what rebuilding the model needs (tools/test.py, infer.py, export.py, Predictor)
RESUME_KEYS = ("epoch", "iter")  # what resuming reads besides them (optimizer, scheduler, … are optional)
PURPOSES = ("model", "resume")

_EXPECTED = {
    "model": "tools/test.py, infer.py, export.py and Predictor.from_checkpoint need a checkpoint of this framework: "
             "a dict with `model` (the weights) and `config` (the run's config, to rebuild the model), as "
             "tools/train.py writes to work_dirs/<experiment>/<time>/checkpoints/{best,last}.pth and "
             "tools/convert_torchvision.py / tools/convert_ultralytics.py write",
    "resume": "Resuming needs a checkpoint that tools/train.py wrote during a run (work_dirs/<experiment>/<time>/"
              "checkpoints/last.pth): a dict with `model`, `config` and the training state, `epoch`, `iter`, "
              "`optimizer`, `scheduler`, the random generators' states",
}


def check_checkpoint(ckpt: Any, path: str | os.PathLike, purpose: str) -> None:
    """Raise CheckpointError, in one paragraph, unless `ckpt` (what `torch.load` returned for `path`) is a checkpoint
    of this framework fit for `purpose`: "model" needs `model` and `config`, "resume" also `epoch` and `iter`. The
    paragraph says what the file holds, what was expected and what to do."""
    if purpose not in PURPOSES:
        raise ValueError(f"purpose must be one of {PURPOSES}, got {purpose!r}")
    has_model = isinstance(ckpt, dict) and all(isinstance(ckpt.get(k), dict) for k in MODEL_KEYS)
    missing = [k for k in RESUME_KEYS if purpose == "resume" and not (isinstance(ckpt, dict) and k in ckpt)]
    if has_model and not missing:
        return
    action = "Cannot resume from" if purpose == "resume" else "Cannot load a model from"
    expected = _EXPECTED[purpose] + "."
    if has_model:  # a checkpoint of ours, without the training state
        raise CheckpointError(
            f"{action} {path}: it holds a checkpoint of this framework with model weights and config but no "
            f"{' or '.join(f'`{k}`' for k in missing)} (its keys: {_keys(ckpt)}), i.e. without its training state. "
            f"{expected} This file can still be evaluated (python tools/test.py checkpoint={path}) and used for "
            "inference (tools/infer.py, tools/export.py, Predictor.from_checkpoint), but not resumed. There is no "
            "option to start a new training from a checkpoint's weights, so start a new run (tools/train.py without "
            "resume=), or resume the last.pth of the run it came from.")
    raise CheckpointError(f"{action} {path}: it holds {describe_content(ckpt)}. {expected} "
                          f"{_what_to_do(ckpt, path, purpose)}")


def describe_content(obj: Any) -> str:
    """What a loaded file holds, in a few words: "a state dict of 354 tensors with keys like backbone.body.conv1.weight,
    …, no config", "an empty dict", "a tensor of shape (3, 4) (torch.float32)", "a dict with keys a, b"."""
    if isinstance(obj, torch.Tensor):
        return f"a single tensor of shape {tuple(obj.shape)} ({obj.dtype})"
    if isinstance(obj, dict):
        if not obj:
            return "an empty dict"
        if _is_state_dict(obj):
            return f"a state dict of {len(obj)} tensors with keys like {_keys(obj, 3)}, no config"
        parts = [f"a dict with keys {_keys(obj)}"]
        inner = obj.get("model", obj.get("state_dict"))
        if isinstance(inner, dict) and _is_state_dict(inner):
            parts.append(f"weights ({len(inner)} tensors) under '{'model' if 'model' in obj else 'state_dict'}'")
        missing = [k for k in MODEL_KEYS if k not in obj]
        if missing:
            parts.append(f"no {' or '.join(missing)}")
        elif not isinstance(obj["model"], dict) or not isinstance(obj["config"], dict):
            parts.append(f"but its model is {_short(obj['model'])} and its config {_short(obj['config'])}")
        return ", ".join(parts)
    return _short(obj)


def _short(obj: Any) -> str:
    if isinstance(obj, torch.Tensor):
        return f"a tensor of shape {tuple(obj.shape)}"
    if isinstance(obj, (list, tuple, set)):
        return f"a {type(obj).__name__} of {len(obj)} items"
    if isinstance(obj, dict):
        return f"a dict of {len(obj)} keys"
    text = repr(obj)
    return f"the {type(obj).__name__} {text[:60]}{'…' if len(text) > 60 else ''}"


def _is_state_dict(obj: dict[Any, Any]) -> bool:
    return bool(obj) and all(isinstance(v, torch.Tensor) for v in obj.values())


def _keys(obj: dict[Any, Any], limit: int = 8) -> str:
    keys = [str(k) for k in obj]
    return ", ".join(keys[:limit]) + (f", … ({len(keys)} in all)" if len(keys) > limit else "")


def _state_dict_of(obj: Any) -> dict[str, torch.Tensor] | None:
    """The state dict in a loaded file: the file itself, or what it holds under 'model'/'state_dict'."""
    if isinstance(obj, dict) and _is_state_dict(obj):
        return obj
    if isinstance(obj, dict):
        for key in ("model", "state_dict"):
            if isinstance(obj.get(key), dict) and _is_state_dict(obj[key]):
                return obj[key]
    return None


def torchvision_arch(state: dict[str, Any]) -> str | None:
    """The tools/convert_torchvision.py `--arch` whose key mapping covers every key of `state` (a torchvision
    RetinaNet/FCOS/Faster R-CNN ResNet-50-FPN state dict), or None."""
    from framework.models.convert_torchvision import ARCHS, convert_key

    if not any(str(k).startswith("backbone.body.") for k in state):
        return None
    for arch in ARCHS:
        try:
            for key in state:
                convert_key(str(key), arch)
        except KeyError:
            continue
        return arch
    return None


def _what_to_do(obj: Any, path: str | os.PathLike, purpose: str) -> str:
    path = Path(path)
    train = ("Pass a checkpoint written by tools/train.py (work_dirs/<experiment>/<time>/checkpoints/best.pth or "
             "last.pth), or convert other libraries' weights first (tools/convert_torchvision.py, "
             "tools/convert_ultralytics.py).")
    state = _state_dict_of(obj)
    if state is None:
        return train
    out = path.with_name(f"{path.stem}_converted.pth")
    keys = [str(k) for k in state]
    arch = torchvision_arch(state)
    if arch is not None:
        from framework.models.convert_torchvision import TORCHVISION_MODELS, num_class_slots

        try:
            slots = num_class_slots(state, arch)
        except Exception:
            slots = None
        classes = "" if slots in (None, 91) else " --classes all"
        note = ("" if not classes else f" (--classes all: it has {slots} class slots, not torchvision's 91 COCO "
                                        "ones)")
        then = (f"then resume={out} starts training from its weights at epoch 0 (a converted checkpoint has no "
                f"optimizer state) when the run builds the same model (model={TORCHVISION_MODELS[arch][0]}, same "
                "number of classes)" if purpose == "resume" else f"then use {out}")
        return (f"Its keys are those of torchvision's {arch} (ResNet-50-FPN): convert it into a checkpoint of ours "
                f"with `python tools/convert_torchvision.py --arch {arch} --weights {path} --out {out}{classes}` "
                f"(add dataset=… overrides for your data){note}, {then}.")
    if any(k.startswith("backbone.body.") for k in keys):
        return ("Its keys look like a torchvision detector's, but not one tools/convert_torchvision.py converts "
                "(RetinaNet, FCOS or Faster R-CNN with a ResNet-50-FPN, --arch retinanet|fcos|faster_rcnn). " + train)
    if any(re.match(r"model\.\d+\.", k) for k in keys):
        return (f"Its keys look like an ultralytics YOLO model's: convert it with `python tools/convert_ultralytics.py "
                f"--weights {path} --out {out}`, then use {out}.")
    if any(k.startswith("conv1.") for k in keys) and any(k.startswith("fc.") for k in keys):
        return ("Its keys look like an ImageNet classification ResNet's: a backbone's pretrained weights are chosen "
                "with model.backbone.pretrained=true (or a torchvision weights name), not loaded as a checkpoint. "
                + train)
    if all(k.split(".", 1)[0] in ("backbone", "neck", "head") for k in keys):
        return ("Its keys look like the weights of this framework's own detector (Detector.state_dict()), saved "
                "without the config needed to rebuild it. " + train)
    return train


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
