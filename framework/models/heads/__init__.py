from framework.models.heads.fcos import FCOSHead
from framework.models.heads.mask import MaskRCNNHead, RoIMaskHead
from framework.models.heads.rcnn import FasterRCNNHead
from framework.models.heads.retina import RetinaHead
from framework.models.heads.roi import RoIBoxHead
from framework.models.heads.rpn import RPNHead
from framework.models.heads.yolo import YOLOHead
from framework.models.heads.yolo_seg import YOLOSegHead

__all__ = ["FCOSHead", "FasterRCNNHead", "MaskRCNNHead", "RPNHead", "RetinaHead", "RoIBoxHead", "RoIMaskHead",
           "YOLOHead", "YOLOSegHead"]
