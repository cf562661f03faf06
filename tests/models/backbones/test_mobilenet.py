import pytest
import torch
from torch import nn
from torchvision import models

from framework.models.backbones import MobileNetV2, MobileNetV3

ALL_STAGES = (1, 2, 3, 4)


@pytest.mark.parametrize("build,channels,blocks", [
    (lambda **kw: MobileNetV2(**kw), [24, 32, 96, 1280], [2, 2, 3, 7, 5]),
    (lambda **kw: MobileNetV3(**kw), [24, 40, 112, 960], [2, 2, 3, 6, 4]),
    (lambda **kw: MobileNetV3(variant="small", **kw), [16, 24, 48, 576], [1, 1, 2, 5, 4]),
], ids=["v2", "v3_large", "v3_small"])
def test_stage_table(build, channels, blocks):
    with torch.device("meta"):
        net = build(out_indices=ALL_STAGES)
    assert net.out_channels == channels and net.strides == [4, 8, 16, 32]
    assert [len(stage) for stage in net.stages()] == blocks
    # the stride-32 stage ends with the last 1x1 conv of torchvision's `features`
    assert isinstance(net.stages()[-1][-1][0], nn.Conv2d) and net.stages()[-1][-1][0].kernel_size == (1, 1)


@pytest.mark.parametrize("build,arch,params", [
    (MobileNetV2, "mobilenet_v2", 2_223_872),
    (MobileNetV3, "mobilenet_v3_large", 2_971_952),
    (lambda **kw: MobileNetV3(variant="small", **kw), "mobilenet_v3_small", 927_008),
], ids=["v2", "v3_large", "v3_small"])
def test_parameter_count_is_torchvisions_features(build, arch, params):
    with torch.device("meta"):
        tv = getattr(models, arch)()
        net, truncated = build(), build(out_indices=(1, 2))
    assert sum(p.numel() for p in net.parameters()) == sum(p.numel() for p in tv.features.parameters()) == params
    end = net._bounds[2][1]  # stage 2 ends here
    assert sum(p.numel() for p in truncated.parameters()) == sum(p.numel() for p in tv.features[:end].parameters())


@pytest.mark.parametrize("variant", ["large", "small"])
def test_torchvision_weights_load_and_give_the_same_features(variant):
    torch.manual_seed(0)
    tv = getattr(models, f"mobilenet_v3_{variant}")().eval()
    net = MobileNetV3(variant=variant, out_indices=ALL_STAGES).eval()
    missing, unexpected = net.load_state_dict(tv.state_dict(), strict=False)
    assert missing == [] and all(k.startswith("classifier.") for k in unexpected)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        feats = net(x)
        expected = [tv.features[:end](x) for _, end in net._bounds[1:]]
    assert all(torch.equal(f, e) for f, e in zip(feats, expected))


def test_v2_loads_torchvision_weights():
    tv = models.mobilenet_v2()
    net = MobileNetV2(out_indices=(1, 2))
    net.features.load_state_dict(tv.features[: len(net.features)].state_dict())
    assert torch.equal(net.features[4].conv[0][0].weight, tv.features[4].conv[0][0].weight)


def test_bad_variant():
    with pytest.raises(ValueError, match="variant must be 'large' or 'small', got 'medium'"):
        MobileNetV3(variant="medium")
