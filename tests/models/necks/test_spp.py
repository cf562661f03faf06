import pytest
import torch
import torch.nn.functional as F

from framework.models.necks import SPP, SPPF
from framework.models.necks.spp import build_spp


def test_chained_5x5_max_pools_are_the_9x9_and_13x13_pools():
    x = torch.randn(2, 3, 11, 14)  # odd, non-square sizes: borders must agree too
    p5 = F.max_pool2d(x, 5, 1, 2)
    p9 = F.max_pool2d(x, 9, 1, 4)
    p13 = F.max_pool2d(x, 13, 1, 6)
    torch.testing.assert_close(F.max_pool2d(p5, 5, 1, 2), p9, rtol=0, atol=0)
    torch.testing.assert_close(F.max_pool2d(F.max_pool2d(p5, 5, 1, 2), 5, 1, 2), p13, rtol=0, atol=0)


@pytest.mark.parametrize("train", [False, True])
def test_sppf_equals_spp_5_9_13_with_the_same_weights(train):
    torch.manual_seed(0)
    spp, sppf = SPP(16, 24, (5, 9, 13)), SPPF(16, 24, kernel_size=5)
    sppf.load_state_dict(spp.state_dict())  # the same convs: state dicts are interchangeable
    spp.train(train), sppf.train(train)
    x = torch.randn(2, 16, 13, 9)
    torch.testing.assert_close(sppf(x), spp(x), rtol=0, atol=0)


def test_spp_shapes_and_receptive_field():
    torch.manual_seed(0)
    spp = SPP(8, 12).eval()
    assert spp(torch.randn(1, 8, 7, 5)).shape == (1, 12, 7, 5)
    assert spp.cv1.conv.out_channels == 4 and spp.cv2.conv.in_channels == 16
    # one changed input pixel reaches outputs 6 pixels away (13x13 pool) but not 7
    x = torch.zeros(1, 8, 20, 20)
    y = torch.zeros_like(x)
    y[..., 10, 10] = 100.0
    diff = (spp(y) - spp(x)).abs().sum(1)[0]
    assert diff[10, 16] > 0 and diff[10, 17] == 0 and diff[4, 4] > 0 and diff[3, 3] == 0


def test_build_spp():
    assert build_spp(None, 8) is None
    assert isinstance(build_spp("spp", 8), SPP) and isinstance(build_spp("sppf", 8), SPPF)
    assert build_spp("sppf", 8).cv2.conv.out_channels == 8
    with pytest.raises(ValueError, match="spp must be one of"):
        build_spp("aspp", 8)
