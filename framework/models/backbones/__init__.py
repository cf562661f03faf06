"""Backbones: plain modules returning a list of feature maps, with `out_channels` and `strides` per map."""
from framework.models.backbones.base import Backbone, PretrainedWeightsError
from framework.models.backbones.cspdarknet import CSPDarknet
from framework.models.backbones.mobilenet import MobileNetV2, MobileNetV3
from framework.models.backbones.resnet import ResNet
from framework.models.backbones.senet import SEBottleneck, SEResNet, SqueezeExcitation
from framework.models.backbones.shufflenet import ShuffleNetV2
from framework.models.backbones.timm import TimmBackbone, TimmNotInstalledError
from framework.models.backbones.vgg import VGG

__all__ = [
    "Backbone", "CSPDarknet", "MobileNetV2", "MobileNetV3", "PretrainedWeightsError", "ResNet", "SEBottleneck", "SEResNet",
    "ShuffleNetV2", "SqueezeExcitation", "TimmBackbone", "TimmNotInstalledError", "VGG",
]
