import pytest
import torch
from torchvision import models

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
    with pytest.raises(ValueError, match=r"no architecture depth=50, groups=32, width_per_group=8.*50/32/4 "
                                         r"\(resnext50_32x4d\)"):
        ResNet(depth=50, groups=32, width_per_group=8)


def test_stages_after_the_last_output_are_dropped():
    net = ResNet(depth=18, out_indices=(2, 3))
    assert not hasattr(net, "layer4")
    assert [f.shape[1] for f in net(torch.randn(1, 3, 64, 64))] == [128, 256]
    full = ResNet(depth=18, out_indices=(2, 3, 4))
    assert sum(p.numel() for p in net.parameters()) < sum(p.numel() for p in full.parameters())


def tv_trunk_params(arch: str, last_layer: int = 4) -> int:
    """Parameters of torchvision's model without its classifier and the layers after `last_layer`."""
    with torch.device("meta"):
        tv = getattr(models, arch)()
    dropped = [tv.fc] + [getattr(tv, f"layer{i}") for i in range(last_layer + 1, 5)]
    return sum(p.numel() for p in tv.parameters()) - sum(p.numel() for m in dropped for p in m.parameters())


@pytest.mark.parametrize("kwargs,arch,params", [
    (dict(depth=18), "resnet18", 11_176_512),
    (dict(depth=50), "resnet50", 23_508_032),
    (dict(depth=50, groups=32, width_per_group=4), "resnext50_32x4d", 22_979_904),
])
def test_parameter_count_is_torchvisions_trunk(kwargs, arch, params):
    with torch.device("meta"):
        net = ResNet(**kwargs)
        truncated = ResNet(**kwargs, out_indices=(1, 2))
    assert sum(p.numel() for p in net.parameters()) == tv_trunk_params(arch) == params
    assert sum(p.numel() for p in truncated.parameters()) == tv_trunk_params(arch, last_layer=2)


def test_resnext50_is_grouped_and_keeps_resnet50_outputs():
    with torch.device("meta"):
        net = ResNet(depth=50, groups=32, width_per_group=4, out_indices=(1, 2, 3, 4))
    assert net.layer1[0].conv2.groups == 32 and net.layer1[0].conv2.in_channels == 128  # 32 groups x 4 channels
    assert net.out_channels == [256, 512, 1024, 2048] and net.strides == [4, 8, 16, 32]


def test_torchvision_weights_load_as_they_are():
    torch.manual_seed(0)
    tv = models.resnet18().eval()
    net = ResNet(depth=18, out_indices=(1, 2, 3, 4)).eval()
    renamed = {"conv1.": "stem.0.", "bn1.": "stem.1."}
    state = {next((new + k[len(old):] for old, new in renamed.items() if k.startswith(old)), k): v
             for k, v in tv.state_dict().items() if not k.startswith("fc.")}
    net.load_state_dict(state)  # strict: every key matches in name and shape
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        y = tv.maxpool(tv.relu(tv.bn1(tv.conv1(x))))
        expected = []
        for i in range(1, 5):
            y = getattr(tv, f"layer{i}")(y)
            expected.append(y)
        feats = net(x)
    assert all(torch.allclose(f, e) for f, e in zip(feats, expected))


def test_norm_frozen_is_torchvisions_frozen_batchnorm():
    """norm_frozen: no BatchNorm weight, bias or statistic changes in training, and the outputs are those of the
    same trunk with torchvision's FrozenBatchNorm2d (what its detectors fine-tune with)."""
    from torchvision.ops.misc import FrozenBatchNorm2d

    torch.manual_seed(0)
    net = ResNet(depth=18, out_indices=(2, 3, 4), frozen_stages=1, norm_frozen=True)
    bns = [m for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    for bn in bns:  # non-trivial statistics, so that eval mode matters
        bn.running_mean.uniform_(-0.5, 0.5)
        bn.running_var.uniform_(0.5, 2.0)
    net.train()
    assert all(not bn.training and not bn.weight.requires_grad and not bn.bias.requires_grad for bn in bns)
    reference = models.resnet18(norm_layer=FrozenBatchNorm2d)
    trunk = {k.replace("stem.0.", "conv1.").replace("stem.1.", "bn1."): v for k, v in net.state_dict().items()
             if not k.endswith("num_batches_tracked")}
    reference.load_state_dict(trunk, strict=False)
    stats = [bn.running_mean.clone() for bn in bns]
    x = torch.randn(2, 3, 64, 64)
    outs = net(x)
    y = reference.maxpool(reference.relu(reference.bn1(reference.conv1(x))))
    expected = []
    for i in range(1, 5):
        y = getattr(reference, f"layer{i}")(y)
        if i >= 2:
            expected.append(y)
    for out, exp in zip(outs, expected):
        torch.testing.assert_close(out, exp, rtol=1e-4, atol=1e-4)
    sum(o.sum() for o in outs).backward()
    assert all(torch.equal(s, bn.running_mean) for s, bn in zip(stats, bns))
    assert net.layer2[0].conv1.weight.grad is not None and net.layer1[0].conv1.weight.grad is None
