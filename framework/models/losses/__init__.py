from framework.models.losses.box import GIoULoss, L1Loss, SmoothL1Loss
from framework.models.losses.focal import FocalLoss

__all__ = ["FocalLoss", "GIoULoss", "L1Loss", "SmoothL1Loss"]
