from framework.data.transforms.normalize import Normalize

__all__ = ["Normalize"]
