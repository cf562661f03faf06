"""Box regression losses on encoded targets (the head encodes targets for them; `on_boxes = False`).

Each returns the (weighted) sum over boxes; the head normalizes by its positives.
"""
from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from framework.models.losses.base import Loss, weighted_sum


class L1Loss(Loss):
    on_boxes = False

    def forward(self, pred: Tensor, target: Tensor, weight: Tensor | None = None) -> Tensor:
        return self.loss_weight * weighted_sum(F.l1_loss(pred.float(), target.float(), reduction="none"), weight)


class SmoothL1Loss(Loss):
    """Huber-like: quadratic below `beta`, linear above (Fast R-CNN; torchvision's detectors use beta = 1/9)."""

    on_boxes = False

    def __init__(self, beta: float = 1.0 / 9, loss_weight: float = 1.0) -> None:
        super().__init__(loss_weight)
        self.beta = beta

    def forward(self, pred: Tensor, target: Tensor, weight: Tensor | None = None) -> Tensor:
        loss = F.smooth_l1_loss(pred.float(), target.float(), beta=self.beta, reduction="none")
        return self.loss_weight * weighted_sum(loss, weight)
