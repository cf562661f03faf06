from framework.models.necks.fpn import FPN
from framework.models.necks.pan import PAN
from framework.models.necks.spp import SPP, SPPF

__all__ = ["FPN", "PAN", "SPP", "SPPF"]
