from framework.models.backbones.resnet import ResNet

__all__ = ["ResNet"]
