from framework.data.transforms.gridmask import GridMask
from framework.data.transforms.hsv import HSVJitter
from framework.data.transforms.lighting import PCALighting
from framework.data.transforms.normalize import Normalize

__all__ = ["GridMask", "HSVJitter", "Normalize", "PCALighting"]
