from framework.models.heads.retina import RetinaHead

__all__ = ["RetinaHead"]
