"""Box regression losses on encoded deltas (the head encodes targets for them; `on_boxes = False`).

Each returns the sum over boxes; the head normalizes by the number of positives.
"""
from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn


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
