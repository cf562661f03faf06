"""Loss modules a head is configured with.

Box losses say through `on_boxes` whether they compare encoded deltas (False: L1, smooth L1) or decoded boxes
(True: the IoU family), and classification losses through `use_sigmoid` whether they take per-class targets in
[0, 1] (focal, varifocal, BCE: `SigmoidLoss`, which also takes one-hot targets as labels) or integer labels
(softmax cross-entropy), so heads switch between them without special cases and refuse a loss of the wrong kind
with a clear error (`check_loss`). `DistributionFocalLoss` trains a DFL head's per-side distance distributions, next
to its box loss. Mask losses (`MaskBCELoss`, `DiceLoss`, `BCEDiceLoss`) score per-instance mask logits.
"""
from torch import nn

from framework.models.losses.base import SigmoidLoss
from framework.models.losses.cross_entropy import BCEWithLogitsLoss, CrossEntropyLoss, smooth_binary_targets
from framework.models.losses.dice import BCEDiceLoss, DiceLoss, MaskBCELoss
from framework.models.losses.dfl import DistributionFocalLoss
from framework.models.losses.focal import FocalLoss, VarifocalLoss
from framework.models.losses.iou import (
    CIoULoss, DIoULoss, GIoULoss, IoULoss, elementwise_box_iou, elementwise_complete_box_iou,
)
from framework.models.losses.smooth_l1 import L1Loss, SmoothL1Loss


def check_loss(loss: nn.Module, role: str, owner: str, *, use_sigmoid: bool | None = None) -> nn.Module:
    """Refuse a loss that cannot play `role` in `owner` (e.g. softmax cross-entropy as RetinaNet's cls_loss)."""
    wrong_kind = not isinstance(loss, SigmoidLoss) if use_sigmoid else getattr(loss, "use_sigmoid", None) is not False
    if use_sigmoid is not None and wrong_kind:
        kind = "a sigmoid classification loss (FocalLoss, VarifocalLoss, BCEWithLogitsLoss, or a subclass of " \
            "framework.models.losses.base.SigmoidLoss)" if use_sigmoid else \
            "a softmax classification loss (CrossEntropyLoss)"
        raise ValueError(f"{owner}.{role} must be {kind}, got {type(loss).__name__}")
    if use_sigmoid is None and not hasattr(loss, "on_boxes"):
        raise ValueError(f"{owner}.{role} must be a box loss (L1Loss, SmoothL1Loss, IoULoss, GIoULoss, DIoULoss, "
                         f"CIoULoss), got {type(loss).__name__}")
    return loss


__all__ = [
    "BCEDiceLoss", "BCEWithLogitsLoss", "CIoULoss", "DiceLoss", "MaskBCELoss", "CrossEntropyLoss", "DIoULoss", "DistributionFocalLoss", "FocalLoss", "GIoULoss",
    "IoULoss", "L1Loss", "SigmoidLoss", "SmoothL1Loss", "VarifocalLoss", "check_loss", "elementwise_box_iou",
    "elementwise_complete_box_iou", "smooth_binary_targets",
]
