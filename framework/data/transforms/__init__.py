from framework.data.transforms.affine import RandomAffine
from framework.data.transforms.fill import image_fill
from framework.data.transforms.gridmask import GridMask
from framework.data.transforms.hsv import HSVJitter
from framework.data.transforms.letterbox import Letterbox
from framework.data.transforms.lighting import PCALighting
from framework.data.transforms.mixup import MixUp
from framework.data.transforms.mosaic import Mosaic
from framework.data.transforms.noise import GaussianNoise
from framework.data.transforms.normalize import Normalize
from framework.data.transforms.pipeline import MixTransform, Pipeline
from framework.data.transforms.rcnn_resize import RCNNResize

__all__ = ["GaussianNoise", "GridMask", "HSVJitter", "Letterbox", "MixTransform", "MixUp", "Mosaic", "Normalize",
           "PCALighting", "Pipeline", "RCNNResize", "RandomAffine", "image_fill"]
