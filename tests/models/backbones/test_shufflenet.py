import pytest
import torch
from torchvision import models

from framework.models.backbones import ShuffleNetV2


@pytest.mark.parametrize("width_mult,channels", [(0.5, [24, 48, 96, 192]), (1.0, [24, 116, 232, 464]),
                                                 (1.5, [24, 176, 352, 704]), (2, [24, 244, 488, 976])])
def test_widths_and_stage_table(width_mult, channels):
    with torch.device("meta"):
        net = ShuffleNetV2(width_mult=width_mult, out_indices=(1, 2, 3, 4))
        feats = net(torch.zeros(1, 3, 64, 96))
    assert net.out_channels == channels == [f.shape[1] for f in feats]
    assert net.strides == [4, 8, 16, 32] and [f.shape[-1] for f in feats] == [24, 12, 6, 3]


def test_stage1_is_the_stem_max_pool():
    net = ShuffleNetV2(out_indices=(1,))
    assert not hasattr(net, "stage2") and net.stages()[1] is net.maxpool
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(net(x)[0], net.maxpool(net.conv1(x)))


@pytest.mark.parametrize("out_indices,last", [((2, 3, 4), 4), ((1, 2), 2)])
def test_parameter_count_is_torchvisions_without_conv5_and_fc(out_indices, last):
    with torch.device("meta"):
        tv = models.shufflenet_v2_x1_0()
        net = ShuffleNetV2(out_indices=out_indices)
    kept = [tv.conv1] + [getattr(tv, f"stage{i}") for i in range(2, last + 1)]
    assert sum(p.numel() for p in net.parameters()) == sum(p.numel() for m in kept for p in m.parameters())
    if last == 4:
        assert sum(p.numel() for p in net.parameters()) == 776_420  # 2,278,604 minus conv5 and fc


def test_torchvision_weights_load_and_give_the_same_features():
    torch.manual_seed(0)
    tv = models.shufflenet_v2_x1_0().eval()
    net = ShuffleNetV2().eval()
    missing, unexpected = net.load_state_dict(tv.state_dict(), strict=False)
    assert missing == [] and {k.split(".")[0] for k in unexpected} == {"conv5", "fc"}
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        c3 = tv.stage2(tv.maxpool(tv.conv1(x)))
        c4 = tv.stage3(c3)
        expected = [c3, c4, tv.stage4(c4)]
        assert all(torch.equal(f, e) for f, e in zip(net(x), expected))


def test_bad_width():
    with pytest.raises(ValueError, match=r"width_mult must be one of \[0.5, 1.0, 1.5, 2.0\], got 0.75"):
        ShuffleNetV2(width_mult=0.75)
