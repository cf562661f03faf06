import torch

from framework.models.necks import FPN


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
