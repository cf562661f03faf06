import pytest
import torch
from torch import nn
from torchvision import models

from framework.models.backbones import PretrainedWeightsError, SEBottleneck, SEResNet, SqueezeExcitation


def test_squeeze_excitation_scales_each_channel_by_a_gate_in_0_1():
    torch.manual_seed(0)
    se = SqueezeExcitation(64)
    assert (se.fc1.in_channels, se.fc1.out_channels, se.fc2.out_channels) == (64, 4, 64)  # ratio 16
    x = torch.randn(2, 64, 5, 7)
    out = se(x)
    assert out.shape == x.shape
    squeezed = x.mean(dim=(2, 3))  # global average pool
    hidden = torch.relu(squeezed @ se.fc1.weight.flatten(1).T + se.fc1.bias)
    gate = torch.sigmoid(hidden @ se.fc2.weight.flatten(1).T + se.fc2.bias)
    assert torch.all((gate > 0) & (gate < 1))
    assert torch.allclose(out, x * gate[:, :, None, None], atol=1e-6)


def test_se_is_applied_to_the_residual_branch_before_the_addition():
    torch.manual_seed(0)
    block = SEBottleneck(256, 64).eval()
    nn.init.constant_(block.se.fc2.bias, -1e4)  # gate ~ 0: the residual branch is switched off
    nn.init.zeros_(block.se.fc2.weight)
    x = torch.randn(1, 256, 8, 8)
    with torch.no_grad():
        assert torch.allclose(block(x), torch.relu(x))
        nn.init.constant_(block.se.fc2.bias, 1e4)  # gate ~ 1: a plain Bottleneck
        plain = models.resnet.Bottleneck(256, 64).eval()
        plain.load_state_dict({k: v for k, v in block.state_dict().items() if not k.startswith("se.")})
        assert torch.allclose(block(x), plain(x), atol=1e-6)


@pytest.mark.parametrize("depth,params", [(50, 26_039_024), (101, 47_277_872)])
def test_parameter_count(depth, params):
    # SE-ResNet-50 has 28,088,024 parameters with its 1000-class fc (the reference implementation; timm's
    # seresnet50 too). We count the trunk only, without the fc (2048 x 1000 + 1000 = 2,049,000): 26,039,024 =
    # torchvision's ResNet-50 trunk (23,508,032) + the SE modules (2,530,992). SE-ResNet-101: 49,326,872 / 47,277,872.
    with torch.device("meta"):
        net = SEResNet(depth=depth)
        tv = getattr(models, f"resnet{depth}")()
    se = sum(p.numel() for m in net.modules() if isinstance(m, SqueezeExcitation) for p in m.parameters())
    trunk = sum(p.numel() for p in tv.parameters()) - sum(p.numel() for p in tv.fc.parameters())
    assert sum(p.numel() for p in net.parameters()) == trunk + se == params
    assert params + 2048 * 1000 + 1000 == {50: 28_088_024, 101: 49_326_872}[depth]


def test_pretrained_points_at_the_timm_backbone():
    with pytest.raises(PretrainedWeightsError, match="model/backbone=timm model.backbone.model_name=seresnet50"):
        SEResNet(pretrained=True)
    with pytest.raises(ValueError, match=r"depth must be one of \[50, 101, 152\], got 34"):
        SEResNet(depth=34)


def test_same_network_as_timm_seresnet50():
    """timm's seresnet50 has ImageNet weights; its state dict loads into ours and gives the same features."""
    timm = pytest.importorskip("timm")
    torch.manual_seed(0)
    ref = timm.create_model("seresnet50", features_only=True, out_indices=(1, 2, 3, 4)).eval()
    net = SEResNet(out_indices=(1, 2, 3, 4)).eval()
    renamed = {"conv1.": "stem.0.", "bn1.": "stem.1."}
    state = {next((new + k[len(old):] for old, new in renamed.items() if k.startswith(old)), k): v
             for k, v in ref.state_dict().items()}
    net.load_state_dict(state)  # strict
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert all(torch.allclose(a, b, atol=1e-5) for a, b in zip(net(x), ref(x)))
