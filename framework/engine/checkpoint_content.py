"""What a checkpoint file holds, in words, and whether it is what a purpose needs: a file that is refused gets one
paragraph saying what it holds (a torchvision state dict, an empty dict, a tensor, text, a truncated archive…),
what was expected and what to do. Kept apart from checkpoint.py, which reads and writes the files."""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import torch

from framework.engine.checkpoint import CheckpointError


def describe_bytes(path: Path, exc: BaseException) -> str:
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
                "(RetinaNet, FCOS, Faster R-CNN or Mask R-CNN with a ResNet-50-FPN, --arch "
                "retinanet|fcos|faster_rcnn|mask_rcnn). " + train)
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


