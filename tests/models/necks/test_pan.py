from functools import partial

import pytest
import torch
from torch import nn

from framework.models import Detector
from framework.models.backbones.cspdarknet import CSPDarknet
from framework.models.blocks import C2f, C3, ConvNormAct
from framework.models.heads import RetinaHead, YOLOHead
from framework.models.necks import PAN, SPPF

CHANNELS = [64, 128, 256]


def feats(batch: int = 2, size: int = 64, channels=CHANNELS):
    return [torch.randn(batch, c, size // s, size // s) for c, s in zip(channels, (8, 16, 32))]


@pytest.mark.parametrize("block,cls", [("c2f", C2f), ("c3", C3)])
def test_yolo_form_keeps_backbone_widths(block, cls):
    pan = PAN(CHANNELS, in_strides=[8, 16, 32], block=block, depth=2)
    outs = pan(feats())
    assert pan.out_channels == CHANNELS and pan.strides == [8, 16, 32]
    assert [tuple(o.shape) for o in outs] == [(2, 64, 8, 8), (2, 128, 4, 4), (2, 256, 2, 2)]
    assert all(isinstance(b, cls) and len(b.blocks) == 2 for b in [*pan.top_down, *pan.bottom_up])
    assert all(not b.blocks[0].add for b in pan.top_down)  # YOLO necks: bottlenecks without shortcut


def test_c2f_follows_yolov8_and_c3_follows_yolov5_wiring():
    v8 = PAN(CHANNELS, block="c2f")
    assert all(isinstance(m, nn.Identity) for m in v8.laterals)
    # top-down: cat(up(C5), C4) = 256 + 128 -> 128; bottom-up P5: cat(conv_s2(P4) 128, C5 256) -> 256
    assert v8.top_down[1].cv1.conv.in_channels == 384 and v8.bottom_up[1].cv1.conv.in_channels == 384
    v5 = PAN(CHANNELS, block="c3")
    assert all(isinstance(m, ConvNormAct) for m in v5.laterals)
    # C5 is reduced to 128 before the upsample; P5 = C3(cat(conv_s2(P4) 128, reduced C5 128)) -> 256
    assert v5.laterals[1].conv.out_channels == 128 and v5.top_down[1].cv1.conv.in_channels == 256
    assert v5.bottom_up[1].cv1.conv.in_channels == 256 and v5.downsamples[1].conv.stride == (2, 2)


def test_every_output_depends_on_every_input():
    pan = PAN(CHANNELS).eval()
    x = [f.requires_grad_() for f in feats(1)]
    for out in pan(x):
        grads = torch.autograd.grad(out.sum(), x, retain_graph=True)
        assert all(g.abs().sum() > 0 for g in grads)  # top-down then bottom-up: full aggregation


def test_uniform_width_and_extra_levels_for_retinanet_style_heads():
    pan = PAN(CHANNELS, out_channels=32, num_outs=5)
    outs = pan(feats(size=128))
    assert pan.out_channels == 32 and pan.strides == [8, 16, 32, 64, 128]
    assert [tuple(o.shape[1:]) for o in outs] == [(32, 16, 16), (32, 8, 8), (32, 4, 4), (32, 2, 2), (32, 1, 1)]
    # P7 is 1x1: the extra levels have no BatchNorm, so batch 1 still trains
    assert len(PAN(CHANNELS, out_channels=32, num_outs=5).train()(feats(1, 128))) == 5
    listed = PAN(CHANNELS, out_channels=[16, 24], num_outs=4)
    assert listed.out_channels == [16, 24, 24, 24] and listed.strides == [8, 16, 32, 64]
    assert [o.shape[1] for o in listed(feats())] == [16, 24, 24, 24]
    assert isinstance(PAN(CHANNELS, out_channels=[64, 128, 256]).projections[0], nn.Identity)
    from_c5 = PAN(CHANNELS, out_channels=32, num_outs=5, extra_from="c5")
    assert from_c5.extra_levels[0][0].in_channels == 256 and from_c5.extra_levels[1][0].in_channels == 32
    assert pan.extra_levels[0][0].in_channels == 32  # default p5: from the last PAN output
    assert [o.shape[-1] for o in from_c5(feats(size=128))] == [16, 8, 4, 2, 1]


def test_spp_on_the_coarsest_input():
    plain, pooled = PAN(CHANNELS), PAN(CHANNELS, spp="sppf")
    assert plain.spp is None and not any(k.startswith("spp.") for k in plain.state_dict())
    assert isinstance(pooled.spp, SPPF) and pooled.spp.cv2.conv.out_channels == 256
    assert [o.shape for o in pooled(feats())] == [o.shape for o in plain(feats())]


def test_odd_sizes_and_bad_arguments():
    x = [torch.randn(1, c, h, w) for c, (h, w) in zip(CHANNELS, [(13, 10), (7, 5), (4, 3)])]
    assert [tuple(o.shape[-2:]) for o in PAN(CHANNELS).eval()(x)] == [(13, 10), (7, 5), (4, 3)]
    with pytest.raises(ValueError, match="num_outs"):
        PAN(CHANNELS, num_outs=2)
    with pytest.raises(ValueError, match="block"):
        PAN(CHANNELS, block="elan")
    with pytest.raises(ValueError, match="extra_from"):
        PAN(CHANNELS, num_outs=4, extra_from="p6")
    with pytest.raises(ValueError, match="at least two"):
        PAN([64])


def test_depth_follows_the_backbone_size_unless_given():
    """YOLO's neck C2f depth is 3 x deepen_factor: the Detector passes CSPDarknet's `neck_depth` to a neck partial
    that leaves `depth` None; an explicit depth wins, and without a CSPDarknet None means 1."""
    head = partial(YOLOHead, num_classes=3)
    with torch.device("meta"):
        for size, depth in (("n", 1), ("m", 2), ("l", 3)):
            det = Detector(CSPDarknet(size=size), partial(PAN), head)
            assert det.neck.depth == depth and len(det.neck.top_down[0].blocks) == depth
        assert Detector(CSPDarknet(size="l"), partial(PAN, depth=1), head).neck.depth == 1
        assert Detector(CSPDarknet(size="l"), PAN([64, 128, 256]), head).neck.depth == 1  # a module: as built
    assert PAN(CHANNELS).depth == 1


def test_retinanet_head_sits_on_pan():
    det = Detector(CSPDarknet(size="n"), partial(PAN, out_channels=32, num_outs=5),
                   partial(RetinaHead, num_classes=3, feat_channels=32, stacked_convs=1, norm="gn"))
    assert det.neck.strides == [8, 16, 32, 64, 128] and det.head.cls_tower[0].in_channels == 32
    targets = [{"boxes": torch.tensor([[4.0, 6.0, 40.0, 30.0]]), "labels": torch.tensor([1])}] * 2
    losses = det.train()(torch.randn(2, 3, 64, 64), targets)
    assert all(torch.isfinite(v) for v in losses.values())
