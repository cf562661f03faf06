"""Mask losses for instance segmentation: per-pixel BCE, soft Dice, and their sum.

Each takes per-instance mask logits `[N, H, W]` and binary targets of the same shape, scores every instance on its
own (mean BCE over its pixels, Dice over its pixels), and returns the sum over instances, like every loss here:
the head divides by the number of instances it trained, because only it knows that normalizer. torchvision has no
Dice loss (its `sigmoid_focal_loss` and `binary_cross_entropy_with_logits` cover the rest), so Dice is written here.
"""
from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from framework.models.losses.base import Loss, weighted_sum


def _flat(logits: Tensor, targets: Tensor) -> tuple[Tensor, Tensor]:
    if logits.shape != targets.shape:
        raise ValueError(f"mask logits {tuple(logits.shape)} and targets {tuple(targets.shape)} differ in shape")
    return logits.float().flatten(1), targets.float().flatten(1)


class MaskBCELoss(Loss):
    """Binary cross-entropy per pixel, averaged over each instance's pixels (Mask R-CNN's mask loss)."""

    on_masks = True

    def per_instance(self, logits: Tensor, targets: Tensor) -> Tensor:
        x, t = _flat(logits, targets)
        return F.binary_cross_entropy_with_logits(x, t, reduction="none").mean(1)

    def forward(self, logits: Tensor, targets: Tensor, weight: Tensor | None = None) -> Tensor:
        return self.loss_weight * weighted_sum(self.per_instance(logits, targets), weight)


class DiceLoss(Loss):
    """Soft Dice, 1 − (2|X∩Y| + s) / (|X| + |Y| + s) per instance, with X the sigmoid of the logits, Y the target
    and s = `smooth`, which keeps an empty target with an empty prediction at loss 0 rather than 0/0. Unlike BCE
    it weighs an instance by overlap, not by pixel count, so small objects are not drowned by their background."""

    on_masks = True

    def __init__(self, smooth: float = 1.0, loss_weight: float = 1.0) -> None:
        super().__init__(loss_weight)
        if smooth < 0:
            raise ValueError(f"smooth={smooth}: the smoothing term must be >= 0")
        self.smooth = float(smooth)

    def per_instance(self, logits: Tensor, targets: Tensor) -> Tensor:
        x, t = _flat(logits, targets)
        p = x.sigmoid()
        overlap = (p * t).sum(1)
        return 1.0 - (2.0 * overlap + self.smooth) / (p.sum(1) + t.sum(1) + self.smooth)

    def forward(self, logits: Tensor, targets: Tensor, weight: Tensor | None = None) -> Tensor:
        return self.loss_weight * weighted_sum(self.per_instance(logits, targets), weight)

    def extra_repr(self) -> str:
        return f"smooth={self.smooth}, loss_weight={self.loss_weight}"


class BCEDiceLoss(Loss):
    """`bce_weight` × MaskBCELoss + `dice_weight` × DiceLoss, per instance: BCE's per-pixel gradients early in
    training, Dice's overlap objective for thin and small masks."""

    on_masks = True

    def __init__(self, bce_weight: float = 1.0, dice_weight: float = 1.0, smooth: float = 1.0,
                 loss_weight: float = 1.0) -> None:
        super().__init__(loss_weight)
        self.bce_weight, self.dice_weight = float(bce_weight), float(dice_weight)
        self.bce, self.dice = MaskBCELoss(), DiceLoss(smooth)

    def per_instance(self, logits: Tensor, targets: Tensor) -> Tensor:
        return (self.bce_weight * self.bce.per_instance(logits, targets)
                + self.dice_weight * self.dice.per_instance(logits, targets))

    def forward(self, logits: Tensor, targets: Tensor, weight: Tensor | None = None) -> Tensor:
        return self.loss_weight * weighted_sum(self.per_instance(logits, targets), weight)


__all__ = ["BCEDiceLoss", "DiceLoss", "MaskBCELoss"]
