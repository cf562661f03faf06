"""IoU-family box losses on decoded XYXY boxes (`on_boxes = True`: the head decodes its predictions for them).

GIoU and DIoU come from `torchvision.ops`, CIoU adds its aspect term to torchvision's DIoU; plain IoU loss (1 − IoU) is the same intersection/union without
the penalty term, which torchvision does not expose element-wise. Each returns the (weighted) sum over boxes; the
head normalizes. They run in float32 even under autocast: the divisions are unstable in half precision.
"""
from __future__ import annotations

import math
from typing import Callable

import torch
from torch import Tensor
from torchvision.ops import distance_box_iou_loss, generalized_box_iou_loss

from framework.models.losses.base import Loss, weighted_sum


def elementwise_box_iou(boxes1: Tensor, boxes2: Tensor, eps: float = 1e-7) -> Tensor:
    """IoU of matching rows of two `[..., 4]` XYXY tensors (torchvision's `box_iou` is all-pairs)."""
    lt = torch.maximum(boxes1[..., :2], boxes2[..., :2])
    rb = torch.minimum(boxes1[..., 2:], boxes2[..., 2:])
    inter = (rb - lt).clamp(min=0).prod(-1)
    area1 = (boxes1[..., 2:] - boxes1[..., :2]).clamp(min=0).prod(-1)
    area2 = (boxes2[..., 2:] - boxes2[..., :2]).clamp(min=0).prod(-1)
    return inter / (area1 + area2 - inter + eps)


def _iou_loss(pred: Tensor, target: Tensor, reduction: str = "none", eps: float = 1e-7) -> Tensor:
    return 1.0 - elementwise_box_iou(pred, target, eps)


class _IoUFamilyLoss(Loss):
    on_boxes = True
    _fn: Callable[..., Tensor]

    def __init__(self, loss_weight: float = 1.0, eps: float = 1e-7) -> None:
        super().__init__(loss_weight)
        self.eps = eps

    def forward(self, pred: Tensor, target: Tensor, weight: Tensor | None = None) -> Tensor:
        if pred.numel() == 0:
            return pred.sum() * 0.0
        loss = type(self)._fn(pred.float(), target.float(), reduction="none", eps=self.eps)
        return self.loss_weight * weighted_sum(loss, weight)


class IoULoss(_IoUFamilyLoss):
    """1 − IoU (UnitBox). No gradient once boxes stop overlapping; prefer GIoU/DIoU/CIoU from scratch."""

    _fn = staticmethod(_iou_loss)


class GIoULoss(_IoUFamilyLoss):
    """1 − GIoU (Rezatofighi et al.): adds the empty share of the enclosing box, so disjoint boxes still learn."""

    _fn = staticmethod(generalized_box_iou_loss)

    def __init__(self, loss_weight: float = 2.0, eps: float = 1e-7) -> None:
        super().__init__(loss_weight, eps)


class DIoULoss(_IoUFamilyLoss):
    """1 − IoU + d²/c² (Zheng et al.): centre distance over the enclosing diagonal; converges faster than GIoU."""

    _fn = staticmethod(distance_box_iou_loss)


def _ciou_loss(pred: Tensor, target: Tensor, reduction: str = "none", eps: float = 1e-7) -> Tensor:
    """DIoU loss (torchvision) + α·v with v the aspect-ratio term. Written out because torchvision's
    `complete_box_iou_loss` divides by the box height without eps, so a zero-height prediction (a ReLU distance head
    at initialization) gives NaN; the heights here get eps as in the YOLO implementations."""
    diou = distance_box_iou_loss(pred, target, reduction="none", eps=eps)
    wp, hp = pred[..., 2] - pred[..., 0], pred[..., 3] - pred[..., 1]
    wt, ht = target[..., 2] - target[..., 0], target[..., 3] - target[..., 1]
    v = (4 / math.pi**2) * (torch.atan(wt / (ht + eps)) - torch.atan(wp / (hp + eps))) ** 2
    with torch.no_grad():
        alpha = v / (1 - elementwise_box_iou(pred, target, eps) + v + eps)
    return diou + alpha * v


def elementwise_complete_box_iou(boxes1: Tensor, boxes2: Tensor, eps: float = 1e-7) -> Tensor:
    """CIoU (in [-1, 1]) of matching rows of two `[..., 4]` XYXY tensors; torchvision's `complete_box_iou` is
    all-pairs, and the task-aligned assigner needs it only for each (box, candidate point) pair."""
    return 1.0 - _ciou_loss(boxes1, boxes2, eps=eps)


class CIoULoss(_IoUFamilyLoss):
    """DIoU plus an aspect-ratio consistency term (Zheng et al.); the YOLO family's default."""

    _fn = staticmethod(_ciou_loss)
