import pytest
import torch
from torch import nn
from torchvision import models

from framework.models.backbones import VGG


def tv_features(arch: str) -> nn.Sequential:
    with torch.device("meta"):  # structure only: the full model has a 102 M-parameter classifier
        return getattr(models, arch)().features


def test_stage_table():
    with torch.device("meta"):
        net = VGG(out_indices=(1, 2, 3, 4))
    assert net.out_channels == [128, 256, 512, 512] and net.strides == [4, 8, 16, 32]
    # every stage ends with its max-pool, stage 0 being block 1
    assert all(isinstance(stage[-1], nn.MaxPool2d) for stage in net.stages())
    assert [sum(isinstance(m, nn.Conv2d) for m in stage) for stage in net.stages()] == [2, 2, 3, 3, 3]


@pytest.mark.parametrize("out_indices,params", [((2, 3, 4), 14_723_136), ((1, 2, 3), 7_640_640)])
def test_parameter_count_is_torchvisions_features_up_to_the_last_block(out_indices, params):
    # vgg16_bn has 138,365,992 parameters, 123,642,856 of them in the classifier
    features = tv_features("vgg16_bn")
    pools = [i for i, m in enumerate(features) if isinstance(m, nn.MaxPool2d)]
    expected = sum(p.numel() for p in features[: pools[max(out_indices)] + 1].parameters())
    with torch.device("meta"):
        net = VGG(out_indices=out_indices)
    assert sum(p.numel() for p in net.parameters()) == expected == params


@pytest.mark.parametrize("depth,batch_norm", [(16, True), (11, False), (19, True)])
def test_state_dict_is_torchvisions_features(depth, batch_norm):
    arch = f"vgg{depth}_bn" if batch_norm else f"vgg{depth}"
    expected = {f"features.{k}": v.shape for k, v in tv_features(arch).state_dict().items()}
    with torch.device("meta"):
        net = VGG(depth=depth, batch_norm=batch_norm)
    assert {k: v.shape for k, v in net.state_dict().items()} == expected
    assert any(isinstance(m, nn.BatchNorm2d) for m in net.modules()) == batch_norm


def test_initialization_is_torchvisions():
    net = VGG(depth=11, out_indices=(1,))
    conv = net.features[0]
    assert torch.all(conv.bias == 0)
    fan_out = conv.out_channels * 9
    assert abs(conv.weight.std().item() - (2 / fan_out) ** 0.5) < 0.01  # kaiming normal, fan_out, ReLU


def test_bad_depth():
    with pytest.raises(ValueError, match=r"VGG depth must be one of \[11, 13, 16, 19\], got 15"):
        VGG(depth=15)
