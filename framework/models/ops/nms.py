"""Non-maximum suppression variants over groups (class-aware NMS: the group is (image, class)).

Plain NMS is `torchvision.ops.batched_nms`. DIoU-NMS (Zheng et al.) suppresses by IoU − d²/c², so two boxes with
similar extent but distant centres (neighbouring objects) both survive; torchvision has no DIoU-NMS, hence the
greedy loop below. It stays fast by computing the suppression matrix with tensor ops in blocks and keeping only the
greedy scan (a bitwise OR per kept box) in NumPy.
"""
from __future__ import annotations

from typing import Literal

import numpy as np
import torch
from torch import Tensor
from torchvision.ops import batched_nms as tv_batched_nms
from torchvision.ops import distance_box_iou

NMS_TYPES = ("nms", "diou")


def _offset_by_group(boxes: Tensor, groups: Tensor) -> Tensor:
    """Shift each group to its own region so boxes of different groups never overlap (IoU 0, DIoU < 0)."""
    span = boxes.max() - boxes.min() + 1
    return boxes + (groups.to(boxes) * span)[:, None]


def diou_nms(boxes: Tensor, scores: Tensor, groups: Tensor, iou_thr: float, block: int = 1024) -> Tensor:
    """Greedy DIoU-NMS within each group; returns kept indices sorted by decreasing score."""
    if boxes.numel() == 0:
        return torch.empty(0, dtype=torch.long, device=boxes.device)
    order = scores.argsort(descending=True)
    shifted = _offset_by_group(boxes.float(), groups)[order]
    n = len(order)
    suppress = np.zeros((n, n), dtype=bool)
    for start in range(0, n, block):  # row blocks keep the float matrix small for thousands of candidates
        rows = distance_box_iou(shifted[start:start + block], shifted) > iou_thr
        suppress[start:start + block] = rows.cpu().numpy()
    removed = np.zeros(n, dtype=bool)
    keep = []
    for i in range(n):
        if not removed[i]:
            keep.append(i)
            removed |= suppress[i]
    return order[torch.as_tensor(keep, dtype=torch.long, device=boxes.device)]


def batched_nms(boxes: Tensor, scores: Tensor, groups: Tensor, iou_thr: float,
                nms_type: Literal["nms", "diou"] = "nms") -> Tensor:
    """Indices of the boxes kept by `nms_type` within each group, by decreasing score."""
    if nms_type == "nms":
        return tv_batched_nms(boxes.float(), scores.float(), groups, iou_thr)
    if nms_type == "diou":
        return diou_nms(boxes, scores, groups, iou_thr)
    raise ValueError(f"nms_type must be one of {NMS_TYPES}, got {nms_type!r}")
