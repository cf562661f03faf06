"""Sigmoid classification losses with a focusing term: focal loss (RetinaNet) and varifocal loss (VarifocalNet).

Both take per-class targets in [0, 1]: one-hot for focal loss, the IoU of the matched box for varifocal loss
(an IoU-aware score, which FCOS and the YOLO head can use in place of a separate quality branch).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor
from torchvision.ops import sigmoid_focal_loss

from framework.models.losses.base import SigmoidLoss


class FocalLoss(SigmoidLoss):
    """Sigmoid focal loss (Lin et al.) from `torchvision.ops`; summed, the head divides by its positives.

    `negative` is its closed form at target 0, (1 − α)·σ(x)^γ·softplus(x): five elementwise ops where
    torchvision's general formula runs about fifteen, and what `forward_labels` evaluates on the dense logits."""

    def __init__(self, alpha: float = 0.25, gamma: float = 2.0, loss_weight: float = 1.0) -> None:
        super().__init__(loss_weight)
        self.alpha, self.gamma = alpha, gamma

    def elementwise(self, logits: Tensor, targets: Tensor) -> Tensor:
        return sigmoid_focal_loss(logits, targets, alpha=self.alpha, gamma=self.gamma, reduction="none")

    def negative(self, logits: Tensor) -> Tensor:
        loss = logits.sigmoid().pow(self.gamma) * F.softplus(logits)
        return loss * (1.0 - self.alpha) if self.alpha >= 0 else loss  # torchvision: alpha < 0 turns weighting off


class VarifocalLoss(SigmoidLoss):
    """Varifocal loss (Zhang et al., VarifocalNet): BCE against an IoU-aware target `q`, where positives
    (q > 0) are weighted by q itself and negatives are down-weighted by `alpha * p**gamma` as in focal loss.

    torchvision has no varifocal loss; it is a few lines on top of `binary_cross_entropy_with_logits`.
    """

    iou_aware = True  # heads give it the IoU of the predicted box as the positive target

    def __init__(self, alpha: float = 0.75, gamma: float = 2.0, loss_weight: float = 1.0) -> None:
        super().__init__(loss_weight)
        self.alpha, self.gamma = alpha, gamma

    def elementwise(self, logits: Tensor, targets: Tensor) -> Tensor:
        focal = torch.where(targets > 0, targets, self.alpha * logits.detach().sigmoid().pow(self.gamma))
        return F.binary_cross_entropy_with_logits(logits, targets, reduction="none") * focal

    def negative(self, logits: Tensor) -> Tensor:
        return F.softplus(logits) * (self.alpha * logits.detach().sigmoid().pow(self.gamma))
