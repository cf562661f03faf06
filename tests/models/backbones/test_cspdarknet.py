import pytest
import torch
from torch import nn

from framework.models.backbones.cspdarknet import CSPDarknet
from framework.models.blocks import C2f, C3
from framework.models.necks import SPPF

WIDTHS = {"n": [16, 32, 64, 128, 256], "s": [32, 64, 128, 256, 512], "m": [48, 96, 192, 384, 768]}
DEPTHS = {("v8", "n"): [1, 2, 2, 1], ("v8", "s"): [1, 2, 2, 1], ("v8", "m"): [2, 4, 4, 2],
          ("v5", "n"): [1, 2, 3, 1], ("v5", "s"): [1, 2, 3, 1], ("v5", "m"): [2, 4, 6, 2]}
# YOLOv8 caps the base widths before widening (ultralytics' max_channels: m 768, l/x 512)
V8_WIDTHS = {**WIDTHS, "m": [48, 96, 192, 384, 576], "l": [64, 128, 256, 512, 512], "x": [80, 160, 320, 640, 640]}


def expected_widths(arch: str, size: str) -> list[int]:
    return V8_WIDTHS[size] if arch == "v8" else WIDTHS[size]


@pytest.mark.parametrize("arch", ["v5", "v8"])
@pytest.mark.parametrize("size", ["n", "s", "m"])
def test_sizes_give_yolo_widths_depths_and_c3_to_c5(arch, size):
    net = CSPDarknet(arch=arch, size=size).eval()
    assert net.widths == expected_widths(arch, size) and net.depths == DEPTHS[arch, size]
    assert net.out_channels == expected_widths(arch, size)[2:] and net.strides == [8, 16, 32]
    with torch.no_grad():
        outs = net(torch.zeros(1, 3, 64, 96))
    assert [tuple(o.shape) for o in outs] == [(1, c, 64 // s, 96 // s) for c, s in zip(net.out_channels, net.strides)]
    block = C3 if arch == "v5" else C2f
    for i, depth in enumerate(net.depths, start=1):
        stage = getattr(net, f"stage{i}")
        assert stage[0].conv.stride == (2, 2)
        assert isinstance(stage[1], block) and len(stage[1].blocks) == depth and stage[1].blocks[0].add
    assert isinstance(net.stage4[-1], SPPF)
    assert net.stem.conv.kernel_size == ((6, 6) if arch == "v5" else (3, 3))


def test_parameter_counts_grow_with_size_and_c2f_costs_more_than_c3():
    counts = {(a, s): sum(p.numel() for p in CSPDarknet(a, s).parameters()) for a in ("v5", "v8") for s in "nsm"}
    for arch in ("v5", "v8"):
        assert counts[arch, "n"] < counts[arch, "s"] < counts[arch, "m"]
    # regression values (YOLOv8-n's backbone has ~1.27 M parameters, YOLOv5-s's ~4.2 M)
    assert counts["v8", "n"] == 1_272_656 and counts["v5", "s"] == 4_171_456
    assert counts["v8", "s"] > counts["v5", "s"]


def test_large_sizes_and_the_neck_depth_they_imply():
    """l and x as ultralytics' yolov8.yaml scales them (x: depth 1.00, not YOLOv5's 1.33), built on the meta
    device: only shapes are checked."""
    with torch.device("meta"):
        nets = {(a, s): CSPDarknet(a, s) for a in ("v5", "v8") for s in "nsmlx"}
    for size in "lx":
        assert nets["v8", size].widths == V8_WIDTHS[size] and nets["v8", size].depths == [3, 6, 6, 3]
    assert nets["v5", "x"].widths == [80, 160, 320, 640, 1280] and nets["v5", "x"].depths == [4, 8, 12, 4]
    assert [nets["v8", s].neck_depth for s in "nsmlx"] == [1, 1, 2, 3, 3]  # YOLO's neck C2f: 3 x deepen
    assert nets["v5", "x"].neck_depth == 4


def test_explicit_factors_win_over_size():
    net = CSPDarknet(size="m", widen_factor=0.25)
    assert net.widths == [16, 32, 64, 128, 192] and net.depths == DEPTHS["v8", "m"]  # m's cap 768 x 0.25
    assert CSPDarknet(size="m", widen_factor=0.25, max_channels=1024).widths == WIDTHS["n"]
    assert CSPDarknet(size="m", arch="v5").widths == WIDTHS["m"]  # YOLOv5 has no cap
    assert CSPDarknet(size=None, deepen_factor=0.33, widen_factor=0.5).widths == WIDTHS["s"]
    assert CSPDarknet().widths == [64, 128, 256, 512, 1024]  # no size, no factors: 1/1 and no cap
    with pytest.raises(ValueError, match="size must be one of"):
        CSPDarknet(size="xl")
    with pytest.raises(ValueError, match="arch"):
        CSPDarknet(arch="v7")


def test_out_indices_build_only_the_needed_stages():
    net = CSPDarknet(size="n", out_indices=(1, 2, 3))
    assert net.out_channels == [32, 64, 128] and net.strides == [4, 8, 16]
    assert not hasattr(net, "stage4")  # nor its SPPF
    assert len(net(torch.zeros(2, 3, 64, 64))) == 3
    with pytest.raises(ValueError, match="out_indices"):
        CSPDarknet(out_indices=(3, 2))


def test_frozen_stages_and_norm_eval():
    net = CSPDarknet(size="n", frozen_stages=1).train()
    frozen = [net.stem, net.stage1]
    assert all(not p.requires_grad for m in frozen for p in m.parameters())
    assert all(p.requires_grad for p in net.stage2.parameters())
    assert all(not m.training for f in frozen for m in f.modules())
    assert net.stage2.training
    bn_frozen = CSPDarknet(size="n", norm_eval=True).train()
    bns = [m for m in bn_frozen.modules() if isinstance(m, nn.BatchNorm2d)]
    assert bns and all(not m.training for m in bns) and bn_frozen.stage3[0].conv.weight.requires_grad
    with pytest.raises(ValueError, match="frozen_stages"):
        CSPDarknet(frozen_stages=5)


def test_gradients_reach_the_stem():
    net = CSPDarknet(size="n", arch="v5")
    sum(o.mean() for o in net(torch.randn(2, 3, 64, 64))).backward()
    assert net.stem.conv.weight.grad.abs().sum() > 0
