"""Sigmoid classification losses with a focusing term: focal loss (RetinaNet) and varifocal loss (VarifocalNet).

Both take per-class targets in [0, 1]: one-hot for focal loss, the IoU of the matched box for varifocal loss
(an IoU-aware score, which FCOS and the YOLO head can use in place of a separate quality branch).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor
from torchvision.ops import sigmoid_focal_loss

from framework.models.losses.base import Loss, weighted_sum


class FocalLoss(Loss):
    """Sigmoid focal loss (Lin et al.) from `torchvision.ops`; summed, the head divides by its positives."""

    use_sigmoid = True

    def __init__(self, alpha: float = 0.25, gamma: float = 2.0, loss_weight: float = 1.0) -> None:
        super().__init__(loss_weight)
        self.alpha, self.gamma = alpha, gamma

    def forward(self, logits: Tensor, targets: Tensor, weight: Tensor | None = None) -> Tensor:
        loss = sigmoid_focal_loss(logits.float(), targets.float(), alpha=self.alpha, gamma=self.gamma, reduction="none")
        return self.loss_weight * weighted_sum(loss, weight)


class VarifocalLoss(Loss):
    """Varifocal loss (Zhang et al., VarifocalNet): BCE against an IoU-aware target `q`, where positives
    (q > 0) are weighted by q itself and negatives are down-weighted by `alpha * p**gamma` as in focal loss.

    torchvision has no varifocal loss; it is a few lines on top of `binary_cross_entropy_with_logits`.
    """

    use_sigmoid = True
    iou_aware = True  # heads give it the IoU of the predicted box as the positive target

    def __init__(self, alpha: float = 0.75, gamma: float = 2.0, loss_weight: float = 1.0) -> None:
        super().__init__(loss_weight)
        self.alpha, self.gamma = alpha, gamma

    def forward(self, logits: Tensor, targets: Tensor, weight: Tensor | None = None) -> Tensor:
        logits, targets = logits.float(), targets.float()
        p = logits.sigmoid()
        focal = torch.where(targets > 0, targets, self.alpha * p.detach().pow(self.gamma))
        loss = F.binary_cross_entropy_with_logits(logits, targets, reduction="none") * focal
        return self.loss_weight * weighted_sum(loss, weight)
