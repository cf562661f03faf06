import pytest
import torch

from framework.models.necks import FPN, SPP, SPPF


def test_fpn_p3_to_p7_from_c5():
    fpn = FPN([128, 256, 512], out_channels=32, num_outs=5, in_strides=[8, 16, 32])
    feats = [torch.randn(2, c, s, s) for c, s in [(128, 16), (256, 8), (512, 4)]]
    outs = fpn(feats)
    assert [o.shape[1] for o in outs] == [32] * 5
    assert [o.shape[-1] for o in outs] == [16, 8, 4, 2, 1]
    assert fpn.strides == [8, 16, 32, 64, 128]
    assert not fpn.fpn.extra_blocks.use_P5
    sum(o.sum() for o in outs).backward()
    assert feats is not None


def test_fpn_extra_levels_from_p5_and_maxpool():
    feats = [torch.randn(1, c, s, s) for c, s in [(32, 16), (32, 8), (32, 4)]]
    p5 = FPN([32, 32, 32], out_channels=32, num_outs=5, extra_from="p5")
    assert p5.fpn.extra_blocks.use_P5
    assert len(p5(feats)) == 5
    maxpool = FPN([32, 32, 32], out_channels=16, num_outs=4)
    assert [o.shape[-1] for o in maxpool(feats)] == [16, 8, 4, 2]
    assert maxpool.strides == [8, 16, 32, 64]


def test_fpn_without_spp_keeps_torchvision_keys():
    fpn = FPN([32, 64, 128], out_channels=16, num_outs=5)
    assert fpn.spp is None
    assert all(k.startswith("fpn.") for k in fpn.state_dict())


@pytest.mark.parametrize("kind,cls", [("spp", SPP), ("sppf", SPPF)])
def test_fpn_spp_pools_the_coarsest_input_first(kind, cls):
    torch.manual_seed(0)
    plain = FPN([32, 64, 128], out_channels=16, num_outs=5).eval()
    pooled = FPN([32, 64, 128], out_channels=16, num_outs=5, spp=kind).eval()
    assert isinstance(pooled.spp, cls) and pooled.spp.cv2.conv.out_channels == 128
    # the FPN part is unchanged: the plain FPN's weights load into it, only the spp keys are new
    missing, unexpected = pooled.load_state_dict(plain.state_dict(), strict=False)
    assert not unexpected and missing and all(k.startswith("spp.") for k in missing)
    feats = [torch.randn(2, c, s, s) for c, s in [(32, 16), (64, 8), (128, 4)]]
    outs = pooled(feats)
    assert [o.shape for o in outs] == [o.shape for o in plain(feats)]
    assert not torch.allclose(outs[2], plain(feats)[2])
    with torch.no_grad():
        expected = plain([feats[0], feats[1], pooled.spp(feats[2])])
    for a, b in zip(outs, expected):
        torch.testing.assert_close(a, b)
