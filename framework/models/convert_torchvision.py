"""Map torchvision's RetinaNet, FCOS, Faster R-CNN and Mask R-CNN (ResNet-50-FPN) state dicts onto our models.

Our `retinanet_r50_fpn`, `fcos_r50_fpn`, `faster_rcnn_r50_fpn` and `mask_rcnn_r50_fpn` configs are built to be the
same networks as torchvision's, so conversion is a renaming of keys plus, optionally, choosing which of torchvision's
91 COCO class slots to keep (torchvision indexes its outputs by COCO category id; our heads use contiguous labels
0..K-1).
"""
from __future__ import annotations

import re
from typing import Callable, Sequence

import torch
from torch import Tensor

ARCHS = ("retinanet", "fcos", "faster_rcnn", "mask_rcnn")
#: the R-CNNs, whose class slots include background at slot 0
TWO_STAGE = ("faster_rcnn", "mask_rcnn")

_BACKBONE_RULES: list[tuple[str, str | Callable[[re.Match], str]]] = [
    (r"^backbone\.body\.conv1\.", "backbone.stem.0."),
    (r"^backbone\.body\.bn1\.", "backbone.stem.1."),
    (r"^backbone\.body\.(layer\d)\.", r"backbone.\1."),
    (r"^backbone\.fpn\.", "neck.fpn."),
]

_RULES: dict[str, list[tuple[str, str | Callable[[re.Match], str]]]] = {
    # RetinaNet towers are Conv2dNormActivation(conv, ReLU) blocks: conv.i.0 -> our Sequential index 2i
    "retinanet": [
        (r"^head\.classification_head\.conv\.(\d+)\.0\.", lambda m: f"head.cls_tower.{2 * int(m[1])}."),
        (r"^head\.classification_head\.cls_logits\.", "head.cls_out."),
        (r"^head\.regression_head\.conv\.(\d+)\.0\.", lambda m: f"head.box_tower.{2 * int(m[1])}."),
        (r"^head\.regression_head\.bbox_reg\.", "head.box_out."),
    ],
    # FCOS towers are flat Sequentials of (conv, GroupNorm, ReLU): same indices as ours
    "fcos": [
        (r"^head\.classification_head\.conv\.", "head.cls_tower."),
        (r"^head\.classification_head\.cls_logits\.", "head.cls_out."),
        (r"^head\.regression_head\.conv\.", "head.box_tower."),
        (r"^head\.regression_head\.bbox_reg\.", "head.box_out."),
        (r"^head\.regression_head\.bbox_ctrness\.", "head.centerness_out."),
    ],
    "faster_rcnn": [
        (r"^rpn\.head\.conv\.0\.0\.", "head.rpn.conv."),
        (r"^rpn\.head\.cls_logits\.", "head.rpn.cls_out."),
        (r"^rpn\.head\.bbox_pred\.", "head.rpn.box_out."),
        (r"^roi_heads\.box_head\.(fc6|fc7)\.", r"head.roi.\1."),
        (r"^roi_heads\.box_predictor\.cls_score\.", "head.roi.cls_out."),
        (r"^roi_heads\.box_predictor\.bbox_pred\.", "head.roi.box_out."),
    ],
}
# Mask R-CNN is Faster R-CNN plus the mask stage. Its FCN blocks are Conv2dNormActivation(conv, ReLU), mask_head.i.0
# -> our Sequential index 2i; state dicts saved before torchvision 0.13 (COCO_V1 among them) name them mask_fcn{i+1}
_RULES["mask_rcnn"] = _RULES["faster_rcnn"] + [
    (r"^roi_heads\.mask_head\.(\d+)\.0\.", lambda m: f"head.mask.convs.{2 * int(m[1])}."),
    (r"^roi_heads\.mask_head\.mask_fcn(\d+)\.", lambda m: f"head.mask.convs.{2 * (int(m[1]) - 1)}."),
    (r"^roi_heads\.mask_predictor\.conv5_mask\.", "head.mask.deconv."),
    (r"^roi_heads\.mask_predictor\.mask_fcn_logits\.", "head.mask.logits."),
]


def convert_key(key: str, arch: str) -> str:
    for pattern, repl in _BACKBONE_RULES + _RULES[arch]:
        new, n = re.subn(pattern, repl, key)
        if n:
            return new
    raise KeyError(f"No rule maps torchvision's {arch} key {key!r}; is this a {arch} ResNet-50-FPN state dict?")


def num_class_slots(state: dict[str, Tensor], arch: str, num_anchors: int = 9) -> int:
    """How many class slots a torchvision state dict has (the R-CNNs' include background)."""
    if arch in TWO_STAGE:
        return state["roi_heads.box_predictor.cls_score.bias"].numel()
    slots = state["head.classification_head.cls_logits.bias"].numel()
    return slots // num_anchors if arch == "retinanet" else slots


def _select_classes(weight: Tensor, num_slots: int, keep: Sequence[int], per: int) -> Tensor:
    """Keep the rows of class slots `keep` in a tensor laid out as [groups, num_slots * per, ...]."""
    shape = weight.shape
    grouped = weight.reshape(-1, num_slots, per, *shape[1:])
    return grouped[:, list(keep)].reshape(-1, *shape[1:])


def convert_state_dict(state: dict[str, Tensor], arch: str, class_slots: Sequence[int] | None = None,
                       num_anchors: int = 9) -> dict[str, Tensor]:
    """Our state dict from torchvision's.

    `class_slots`: torchvision output slots to keep, in our label order (e.g. the 80 COCO category ids, for a
    model trained on torchvision's 91-slot layout to evaluate on a COCO dataset with contiguous labels). For the
    R-CNNs, slot 0 (background) is always kept in front. None keeps every slot as it is. `num_anchors`: anchors
    per location of the RetinaNet (its class logits are laid out anchor-major).
    """
    if arch not in ARCHS:
        raise ValueError(f"arch must be one of {ARCHS}, got {arch!r}")
    out: dict[str, Tensor] = {}
    for key, value in state.items():
        out[convert_key(key, arch)] = value
    # FrozenBatchNorm2d (torchvision's pretrained detectors) has no num_batches_tracked; BatchNorm2d does
    for key in [k for k in out if k.endswith(".running_var")]:
        out.setdefault(key[: -len("running_var")] + "num_batches_tracked", torch.tensor(0, dtype=torch.long))
    if class_slots is not None:
        keep = list(class_slots)
        num = num_class_slots(state, arch, num_anchors)
        if arch in ("retinanet", "fcos"):
            for k in ("weight", "bias"):
                out[f"head.cls_out.{k}"] = _select_classes(out[f"head.cls_out.{k}"], num, keep, 1)
        else:
            keep = [0] + [s for s in keep if s != 0]
            for k in ("weight", "bias"):
                out[f"head.roi.cls_out.{k}"] = _select_classes(out[f"head.roi.cls_out.{k}"], num, keep, 1)
                out[f"head.roi.box_out.{k}"] = _select_classes(out[f"head.roi.box_out.{k}"], num, keep, 4)
                if arch == "mask_rcnn":
                    out[f"head.mask.logits.{k}"] = _select_classes(out[f"head.mask.logits.{k}"], num, keep, 1)
    return out


# ------------------------------------------------------------------------------------------ sources and classes

#: our model config and torchvision's builder / weights enum for each architecture
TORCHVISION_MODELS = {
    "retinanet": ("retinanet_r50_fpn", "retinanet_resnet50_fpn", "RetinaNet_ResNet50_FPN_Weights"),
    "fcos": ("fcos_r50_fpn", "fcos_resnet50_fpn", "FCOS_ResNet50_FPN_Weights"),
    "faster_rcnn": ("faster_rcnn_r50_fpn", "fasterrcnn_resnet50_fpn", "FasterRCNN_ResNet50_FPN_Weights"),
    "mask_rcnn": ("mask_rcnn_r50_fpn", "maskrcnn_resnet50_fpn", "MaskRCNN_ResNet50_FPN_Weights"),
}


class TorchvisionWeightsError(RuntimeError):
    """The torchvision weights named on the command line cannot be found or downloaded."""


def load_torchvision_state(arch: str, weights: str) -> tuple[dict[str, Tensor], list[str]]:
    """A torchvision state dict and its class names (slot order), from a weights enum name (`COCO_V1`, downloaded
    into torch's hub cache) or a `.pth` file holding a state dict (class names then come from COCO_V1's meta)."""
    from pathlib import Path

    from torchvision.models import detection

    enum = getattr(detection, TORCHVISION_MODELS[arch][2])
    names = list(enum.COCO_V1.meta["categories"])
    if Path(weights).suffix in (".pth", ".pt") or Path(weights).is_file():
        if not Path(weights).is_file():
            raise TorchvisionWeightsError(f"Weights file not found: {weights}")
        state = torch.load(weights, map_location="cpu", weights_only=True)
        state = state.get("model", state) if isinstance(state, dict) else state
        return state, names
    try:
        entry = enum[weights]
    except KeyError:
        raise TorchvisionWeightsError(f"{enum.__name__} has no weights {weights!r}; choose one of "
                                      f"{', '.join(enum.__members__)} or give a .pth file") from None
    try:
        return entry.get_state_dict(progress=True, check_hash=True), list(entry.meta["categories"])
    except Exception as exc:  # no internet, proxy, hash mismatch
        raise TorchvisionWeightsError(
            f"Could not download {entry.url}: {exc}. Without internet, download it elsewhere and pass the file "
            "with --weights /path/to/file.pth.") from exc


def coco_slots(names: Sequence[str]) -> list[int]:
    """The slots of torchvision's 91-slot COCO layout that are real classes: the 80 COCO category ids, in the order
    our COCO dataset gives contiguous labels (sorted category id)."""
    return [i for i, n in enumerate(names) if n not in ("__background__", "N/A")]
