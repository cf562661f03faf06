"""Map an ultralytics YOLOv8 detection state dict onto our `yolo_cspdarknet_s` model, and back.

Our YOLOv8 (`CSPDarknet(arch="v8")` + `PAN(block="c2f")` + `YOLOHead(reg_max=16)`) is ultralytics' network module
for module, so conversion is a renaming of keys: ultralytics numbers the layers of its yolov8.yaml (`model.0` … the
Detect head `model.22`), we name them by role. Inside a layer the names agree (`conv`/`bn` of a conv block,
`cv1`/`cv2` of C2f and SPPF), except C2f's bottlenecks (`m` → `blocks`), the head's branches (`cv2` → box,
`cv3` → class) and the DFL's fixed 1×1 conv (`dfl.conv.weight` [1, 16, 1, 1] → `head.dfl_proj` [16]).

Official `.pt` files are pickles of ultralytics' classes, which only open with the `ultralytics` package installed
(and, being pickles, run code: open only files you trust). `load_ultralytics_state` opens them when ultralytics is
importable; otherwise it asks for a plain state dict, which `EXTRACT_COMMAND` writes in an environment that has it.
"""
from __future__ import annotations

import pickle
import re
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from framework.models.backbones.cspdarknet import BASE_WIDTHS, SIZES, scale_depth, scale_width

# ultralytics' yolov8.yaml layer index → our module; layers 10, 11, 13, 14, 17, 20 (upsample, concat) hold nothing
LAYERS: dict[int, str] = {
    0: "backbone.stem", 1: "backbone.stage1.0", 2: "backbone.stage1.1", 3: "backbone.stage2.0",
    4: "backbone.stage2.1", 5: "backbone.stage3.0", 6: "backbone.stage3.1", 7: "backbone.stage4.0",
    8: "backbone.stage4.1", 9: "backbone.stage4.2",
    12: "neck.top_down.1", 15: "neck.top_down.0", 16: "neck.downsamples.0", 18: "neck.bottom_up.0",
    19: "neck.downsamples.1", 21: "neck.bottom_up.1",
}
DETECT = 22
DFL_KEY = (f"model.{DETECT}.dfl.conv.weight", "head.dfl_proj")
EXTRACT_COMMAND = ("python -c \"import torch; from ultralytics import YOLO; m = YOLO('{src}').model.float(); "
                   "torch.save({{'model': m.state_dict(), 'names': m.names}}, '{dst}')\"")


class UltralyticsWeightsError(RuntimeError):
    """The file is not a YOLOv8 detection state dict we can read (or needs ultralytics to be read)."""


def _prefix_pairs() -> list[tuple[str, str]]:
    """(ultralytics prefix, our prefix), more specific first, so the first match of either side renames a key."""
    pairs = [(f"model.{DETECT}.cv2.", "head.box_branches."), (f"model.{DETECT}.cv3.", "head.cls_branches.")]
    for layer, ours in LAYERS.items():
        pairs += [(f"model.{layer}.m.", f"{ours}.blocks."), (f"model.{layer}.", f"{ours}.")]
    return pairs


PREFIXES = _prefix_pairs()


def _rename(key: str, source: int) -> str:
    for pair in PREFIXES:
        if key.startswith(pair[source]):
            return pair[1 - source] + key[len(pair[source]):]
    side = "ultralytics'" if source == 0 else "our"
    raise UltralyticsWeightsError(f"No rule maps {side} key {key!r}; is this a YOLOv8 detection model (yolov8n.pt "
                                  "… yolov8x.pt, or one trained from their yolov8.yaml)?")


def from_ultralytics(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """Our state dict from ultralytics' (floating tensors as float32: official checkpoints are half precision)."""
    out = {}
    for key, value in state.items():
        value = value.float() if value.is_floating_point() else value
        out[DFL_KEY[1] if key == DFL_KEY[0] else _rename(key, 0)] = value.flatten() if key == DFL_KEY[0] else value
    return out


def to_ultralytics(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """ultralytics' state dict from ours (the inverse of `from_ultralytics`)."""
    return {DFL_KEY[0] if k == DFL_KEY[1] else _rename(k, 1): v.reshape(1, -1, 1, 1) if k == DFL_KEY[1] else v
            for k, v in state.items()}


@dataclass(frozen=True)
class UltralyticsModel:
    """What a YOLOv8 state dict is: its size (n/s/m/l/x), classes and bins per box side."""

    size: str
    num_classes: int
    reg_max: int


def describe(state: dict[str, Tensor]) -> UltralyticsModel:
    """Read the size from the stem width and the first C2f's depth, the classes and bins from the head."""
    needed = ["model.0.conv.weight", f"model.{DETECT}.cv3.0.2.bias", DFL_KEY[0]]
    missing = [k for k in needed if k not in state]
    if missing:
        raise UltralyticsWeightsError(f"Not a YOLOv8 detection state dict: no {', '.join(missing)} (YOLOv5u, YOLO11 "
                                      "and segmentation/pose models have other layouts).")
    stem = state["model.0.conv.weight"].shape[0]
    depth = len({k.split(".")[3] for k in state if re.match(r"model\.2\.m\.\d+\.", k)})
    for size, (deepen, widen, cap) in SIZES["v8"].items():
        if scale_width(BASE_WIDTHS[0], widen, cap) == stem and scale_depth(3, deepen) == depth:
            return UltralyticsModel(size, state[needed[1]].numel(), state[DFL_KEY[0]].numel())
    raise UltralyticsWeightsError(f"No YOLOv8 size has a {stem}-channel stem and {depth} bottleneck(s) in layer 2; "
                                  "only the n/s/m/l/x scales of yolov8.yaml are supported.")


def _unwrap(obj: object) -> tuple[dict[str, Tensor], list[str] | None]:
    """A flat state dict, or `{"model": state_dict, "names": …}` as `EXTRACT_COMMAND` writes; keys of a saved
    `YOLO` wrapper (`model.model.0…`) lose their extra prefix."""
    names = None
    if isinstance(obj, dict) and isinstance(obj.get("model"), dict):
        names, obj = obj.get("names"), obj["model"]
    if not isinstance(obj, dict) or not all(isinstance(v, Tensor) for v in obj.values()):
        raise UltralyticsWeightsError("The file holds no state dict (a mapping of names to tensors).")
    if obj and all(k.startswith("model.model.") for k in obj):
        obj = {k[len("model."):]: v for k, v in obj.items()}
    if isinstance(names, dict):
        names = [str(names[i]) for i in sorted(names)]
    return dict(obj), list(names) if names is not None else None


def load_ultralytics_state(path: str | Path) -> tuple[dict[str, Tensor], list[str] | None]:
    """The ultralytics state dict in `path` and its class names when the file has them.

    `.safetensors`, or a `.pt`/`.pth` holding a plain state dict (or `{"model": …, "names": …}`), load without
    ultralytics; an official checkpoint (a pickled model) needs ultralytics importable, else the error says how to
    extract its state dict where it is."""
    path = Path(path)
    if not path.is_file():
        raise UltralyticsWeightsError(f"Weights file not found: {path}")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return _unwrap(load_file(str(path)))
    try:
        return _unwrap(torch.load(path, map_location="cpu", weights_only=True))
    except pickle.UnpicklingError:
        pass  # a pickled model: ultralytics' classes are needed to rebuild it
    try:
        import ultralytics  # noqa: F401  (unpickling imports its modules)
    except ImportError:
        command = EXTRACT_COMMAND.format(src=path.name, dst=path.with_name(path.stem + "_state.pt").name)
        raise UltralyticsWeightsError(
            f"{path} is an ultralytics checkpoint (a pickle of ultralytics' classes), which needs the ultralytics "
            f"package to open. In an environment with ultralytics, extract its state dict:\n  {command}\nand convert "
            "that file instead.") from None
    ckpt = torch.load(path, map_location="cpu", weights_only=False)
    model = ckpt
    if isinstance(ckpt, dict):  # ultralytics saves the EMA as the weights to use, the raw model next to it
        model = ckpt.get("ema") if ckpt.get("ema") is not None else ckpt.get("model")
    if model is None or not hasattr(model, "state_dict"):
        raise UltralyticsWeightsError(f"{path} holds no ultralytics model (no 'ema' or 'model' entry).")
    return _unwrap({"model": model.float().state_dict(), "names": getattr(model, "names", None)})


__all__ = ["EXTRACT_COMMAND", "LAYERS", "UltralyticsModel", "UltralyticsWeightsError", "describe",
           "from_ultralytics", "load_ultralytics_state", "to_ultralytics"]
