"""Loss modules a head is configured with. Box losses say through `on_boxes` whether they compare encoded deltas
(False: L1, smooth L1) or decoded boxes (True: the IoU family), so heads switch between them without special cases."""
from framework.models.losses.focal import FocalLoss
from framework.models.losses.iou import GIoULoss
from framework.models.losses.smooth_l1 import L1Loss, SmoothL1Loss

__all__ = ["FocalLoss", "GIoULoss", "L1Loss", "SmoothL1Loss"]
