"""IoU-family box losses on decoded boxes (`on_boxes = True`: the head decodes its predictions for them),
built on `torchvision.ops`. Each returns the sum over boxes; the head normalizes.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn
from torchvision.ops import generalized_box_iou_loss


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
