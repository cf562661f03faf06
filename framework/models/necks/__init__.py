from framework.models.necks.fpn import FPN

__all__ = ["FPN"]
