"""Box bookkeeping shared by the transforms that move boxes themselves (Mosaic, MixUp, RandomAffine).

torchvision's `SanitizeBoundingBoxes` drops boxes below a size, but cannot tell a box that was mostly cut off
from one that was always small: that needs the box before the transform. The filter the YOLO recipes use
(`box_candidates`) compares the two, so a sliver left of an object at a border is not taught as the object.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import Tensor
from torchvision import tv_tensors


def keep_boxes(before: Tensor, after: Tensor, min_size: float = 2.0, min_area_ratio: float = 0.1,
               max_aspect_ratio: float = 20.0) -> Tensor:
    """Boolean mask of the boxes worth keeping after a transform.

    Args:
        before: (N, 4) XYXY boxes as they would be without clipping (already scaled by the transform).
        after: (N, 4) XYXY boxes after clipping to the new image.
        min_size: both sides at least this many pixels.
        min_area_ratio: at least this fraction of the unclipped area is still in the image.
        max_aspect_ratio: longer side / shorter side at most this.
    """
    w, h = after[:, 2] - after[:, 0], after[:, 3] - after[:, 1]
    area_before = ((before[:, 2] - before[:, 0]) * (before[:, 3] - before[:, 1])).clamp_min(1e-9)
    aspect = torch.maximum(w / h.clamp_min(1e-9), h / w.clamp_min(1e-9))
    return (w >= min_size) & (h >= min_size) & (w * h / area_before >= min_area_ratio) & (aspect <= max_aspect_ratio)


def clip_boxes(boxes: Tensor, height: int, width: int) -> Tensor:
    return torch.stack([boxes[:, 0].clamp(0, width), boxes[:, 1].clamp(0, height),
                        boxes[:, 2].clamp(0, width), boxes[:, 3].clamp(0, height)], dim=1)


def fill_value(fill: float | list[float] | tuple[float, ...], image: Tensor) -> Tensor:
    """Per-channel fill as a (C, 1, 1) tensor in the image's dtype; `fill` is given in 0–255 pixel units."""
    value = torch.as_tensor(fill, dtype=torch.float32).reshape(-1)
    if value.numel() == 1:
        value = value.expand(image.shape[-3])
    if image.is_floating_point():
        value = value / 255.0
    return value.to(image.dtype)[:, None, None]


def make_target(source: dict[str, Any], boxes: Tensor, labels: Tensor, canvas: tuple[int, int],
                masks: Tensor | None = None, source_ids: list[Any] | None = None) -> dict[str, Any]:
    """A target for a new canvas: the new boxes/labels/masks plus the bookkeeping entries of `source`.

    `source_ids` lists the image ids a mixed sample was made of (shown by browse_dataset and in error messages).
    """
    target = {k: v for k, v in source.items() if k not in ("boxes", "labels", "masks")}
    target["boxes"] = tv_tensors.BoundingBoxes(boxes.reshape(-1, 4).float(), format="XYXY", canvas_size=canvas)
    target["labels"] = labels.reshape(-1)
    if masks is not None:
        target["masks"] = tv_tensors.Mask(masks)
    if source_ids is not None:
        target["source_ids"] = source_ids
    return target


def source_ids(target: dict[str, Any]) -> list[Any]:
    return list(target.get("source_ids", [target.get("image_id")]))


def mask_presence(samples: list[tuple[Any, dict[str, Any]]], name: str) -> bool:
    """Whether the samples a multi-image transform combines carry instance masks: all of them or none.

    Samples of one dataset agree; a mix (a partner from another source) would silently lose the masks, so it stops
    with the reason instead."""
    present = ["masks" in target for _, target in samples]
    if any(present) and not all(present):
        ids = [target.get("image_id") for _, target in samples]
        raise ValueError(f"{name}: some of the samples it combines carry instance masks and some do not "
                         f"(image ids {ids}, masks {present}); build every dataset it draws from with the same "
                         "`with_masks`.")
    return all(present) and bool(present)
