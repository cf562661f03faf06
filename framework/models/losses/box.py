"""Box regression losses.

Two families: `L1Loss`/`SmoothL1Loss` compare encoded deltas, `GIoULoss` compares decoded boxes. Each loss says
which it wants through `on_boxes`, so a head can switch between them from the config without special cases.
All return the sum over boxes; the head normalizes.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.ops import generalized_box_iou_loss


class L1Loss(nn.Module):
    on_boxes = False

    def __init__(self, loss_weight: float = 1.0) -> None:
        super().__init__()
        self.loss_weight = loss_weight

    def forward(self, pred: Tensor, target: Tensor) -> Tensor:
        return self.loss_weight * F.l1_loss(pred, target, reduction="sum")


class SmoothL1Loss(nn.Module):
    on_boxes = False

    def __init__(self, beta: float = 1.0 / 9, loss_weight: float = 1.0) -> None:
        super().__init__()
        self.beta, self.loss_weight = beta, loss_weight

    def forward(self, pred: Tensor, target: Tensor) -> Tensor:
        return self.loss_weight * F.smooth_l1_loss(pred, target, beta=self.beta, reduction="sum")


class GIoULoss(nn.Module):
    on_boxes = True

    def __init__(self, loss_weight: float = 2.0) -> None:
        super().__init__()
        self.loss_weight = loss_weight

    def forward(self, pred: Tensor, target: Tensor) -> Tensor:
        if pred.numel() == 0:
            return pred.sum() * 0.0
        # the IoU family is unstable in half precision; compute it in float32 under autocast
        return self.loss_weight * generalized_box_iou_loss(pred.float(), target.float(), reduction="sum").to(torch.float32)
