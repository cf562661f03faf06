"""What every loss module here shares: an optional per-element weight, a sum, and a `loss_weight`.

Losses return sums and leave the normalization to the head, because only the head knows the right normalizer
(positives across the whole batch for RetinaNet/FCOS, sampled RoIs for Faster R-CNN, target-score sum for YOLO).
"""
from __future__ import annotations

from torch import Tensor, nn


def weighted_sum(loss: Tensor, weight: Tensor | None) -> Tensor:
    """Sum of `loss` after multiplying by `weight`, which broadcasts from the left (`[N]` weights `[N, K]`)."""
    if weight is not None:
        while weight.dim() < loss.dim():
            weight = weight.unsqueeze(-1)
        loss = loss * weight
    return loss.sum()


class Loss(nn.Module):
    """Base for configurable losses: `loss_weight` scales the summed loss."""

    def __init__(self, loss_weight: float = 1.0) -> None:
        super().__init__()
        self.loss_weight = float(loss_weight)

    def extra_repr(self) -> str:
        return f"loss_weight={self.loss_weight}"
