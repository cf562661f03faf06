"""Sigmoid focal loss (Lin et al., RetinaNet) as a module a head can be configured with."""
from __future__ import annotations

from torch import Tensor, nn
from torchvision.ops import sigmoid_focal_loss


class FocalLoss(nn.Module):
    """Summed sigmoid focal loss over the given elements; the head divides by its normalizer (positives)."""

    def __init__(self, alpha: float = 0.25, gamma: float = 2.0, loss_weight: float = 1.0) -> None:
        super().__init__()
        self.alpha, self.gamma, self.loss_weight = alpha, gamma, loss_weight

    def forward(self, logits: Tensor, targets: Tensor, weight: Tensor | None = None) -> Tensor:
        loss = sigmoid_focal_loss(logits, targets, alpha=self.alpha, gamma=self.gamma, reduction="none")
        if weight is not None:
            loss = loss * weight
        return self.loss_weight * loss.sum()
