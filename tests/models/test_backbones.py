import pytest
import torch

from framework.models.backbones import ResNet


@pytest.mark.parametrize("depth,channels", [(18, [128, 256, 512]), (50, [512, 1024, 2048])])
def test_resnet_outputs_channels_and_strides(depth, channels):
    net = ResNet(depth=depth, out_indices=(2, 3, 4))
    feats = net(torch.randn(2, 3, 64, 96))
    assert [f.shape[1] for f in feats] == channels == net.out_channels
    assert net.strides == [8, 16, 32]
    assert [tuple(f.shape[-2:]) for f in feats] == [(8, 12), (4, 6), (2, 3)]
    sum(f.mean() for f in feats).backward()
    assert net.layer4[0].conv1.weight.grad is not None


def test_frozen_stages_and_norm_eval():
    net = ResNet(depth=18, frozen_stages=1, norm_eval=True)
    net.train()
    assert not any(p.requires_grad for p in net.stem.parameters())
    assert not any(p.requires_grad for p in net.layer1.parameters())
    assert all(p.requires_grad for p in net.layer2.parameters())
    assert all(not m.training for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d))
    before = net.layer3[0].bn1.running_mean.clone()
    net(torch.randn(2, 3, 64, 64))
    assert torch.equal(before, net.layer3[0].bn1.running_mean)


def test_bad_arguments_are_explained():
    with pytest.raises(ValueError, match="depth must be one of"):
        ResNet(depth=19)
    with pytest.raises(ValueError, match="out_indices"):
        ResNet(depth=18, out_indices=(4, 2))


def test_stages_after_the_last_output_are_dropped():
    net = ResNet(depth=18, out_indices=(2, 3))
    assert not hasattr(net, "layer4")
    assert [f.shape[1] for f in net(torch.randn(1, 3, 64, 64))] == [128, 256]
    full = ResNet(depth=18, out_indices=(2, 3, 4))
    assert sum(p.numel() for p in net.parameters()) < sum(p.numel() for p in full.parameters())
