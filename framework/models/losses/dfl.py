"""Distribution Focal Loss (Li et al., Generalized Focal Loss, 2020), as YOLOv8 trains its box distributions with.

A DFL head predicts, for each side of a box, logits over `n_bins` integer distances 0..n_bins-1 (in strides); the
distance is the expectation of their softmax. A continuous target y between bins i and i + 1 is taught as the
two-point distribution that has y as its expectation: cross-entropy to bin i weighted by (i + 1 − y) plus to bin
i + 1 weighted by (y − i). The distribution is pushed to concentrate around y instead of anywhere whose mean
happens to be y, which sharpens the boxes that the IoU loss alone leaves blurry.
"""
from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from framework.models.losses.base import Loss, weighted_sum


class DistributionFocalLoss(Loss):
    """DFL summed over boxes, averaged over each box's sides, times `loss_weight` (YOLOv8: 1.5).

    `forward(pred, target, weight)`: `pred` `[N, S, n_bins]` logits (S sides, 4 for ltrb distances), `target`
    `[N, S]` distances in bin units, `weight` `[N]` per box (YOLOv8: the box's target score; the head divides by
    their sum). Targets are clamped to [0, n_bins − 1 − `margin`] so that the upper neighbour bin always exists.
    """

    def __init__(self, loss_weight: float = 1.5, margin: float = 0.01) -> None:
        super().__init__(loss_weight)
        if not 0.0 < margin < 1.0:
            raise ValueError(f"margin must be in (0, 1), got {margin}")
        self.margin = float(margin)

    def forward(self, pred: Tensor, target: Tensor, weight: Tensor | None = None) -> Tensor:
        if pred.dim() != 3 or target.shape != pred.shape[:-1]:
            raise ValueError(f"DistributionFocalLoss expects pred [N, S, n_bins] and target [N, S], got "
                             f"{tuple(pred.shape)} and {tuple(target.shape)}")
        if pred.numel() == 0:
            return pred.sum() * 0.0
        n_bins = pred.shape[-1]
        target = target.float().clamp(0.0, n_bins - 1 - self.margin)
        left = target.floor().long()
        right_weight = target - left  # distance from the left bin: the right bin's share
        log_probs = F.log_softmax(pred.float(), dim=-1)
        nll_left = -log_probs.gather(-1, left[..., None])[..., 0]
        nll_right = -log_probs.gather(-1, (left + 1)[..., None])[..., 0]
        per_side = nll_left * (1.0 - right_weight) + nll_right * right_weight
        return self.loss_weight * weighted_sum(per_side.mean(-1), weight)

    def extra_repr(self) -> str:
        return f"loss_weight={self.loss_weight}, margin={self.margin}"


__all__ = ["DistributionFocalLoss"]
