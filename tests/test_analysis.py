"""framework.analysis: parameter counts, FLOPs, receptive fields and latency against numbers worked out by hand."""
from __future__ import annotations

from functools import partial

import pytest
import torch
import torchvision
from torch import nn

from framework.analysis import (
    analyze, component_flops, count_flops, count_parameters, format_table, measure_latency, parameter_breakdown,
    receptive_field, receptive_fields,
)
from framework.models import Detector
from framework.models.backbones import ResNet
from framework.models.heads import RetinaHead
from framework.models.necks import FPN


@pytest.fixture(scope="module")
def resnet50() -> ResNet:
    # out_indices (2, 3, 4) keeps the stem and all of layer1..layer4 (only layers after the last output are dropped)
    return ResNet(depth=50)


def tiny_detector() -> Detector:
    return Detector(ResNet(depth=18, frozen_stages=1), partial(FPN, out_channels=32, num_outs=5),
                    partial(RetinaHead, num_classes=3, feat_channels=32, stacked_convs=1))


def test_resnet50_parameters_match_torchvision(resnet50):
    assert count_parameters(torchvision.models.resnet50()) == 25_557_032  # with the 1000-class classifier
    fc = 2048 * 1000 + 1000  # torchvision's fc: weights + biases
    # Ours counts the stem and layer1..layer4 (BatchNorm weights and biases included, running statistics are
    # buffers, not parameters) and no avgpool/fc classifier: torchvision's count minus fc.
    assert count_parameters(resnet50) == 25_557_032 - fc == 23_508_032


def test_parameter_breakdown_trainable_and_total():
    det = tiny_detector()  # frozen_stages=1: stem and layer1 of ResNet-18 are not trained
    parts = parameter_breakdown(det)
    assert set(parts) == {"backbone", "neck", "head", "total"}
    assert sum(parts[c]["total"] for c in ("backbone", "neck", "head")) == parts["total"]["total"]
    frozen = count_parameters(det.backbone.stem) + count_parameters(det.backbone.layer1)
    assert frozen > 0
    assert parts["backbone"]["trainable"] == parts["backbone"]["total"] - frozen
    assert parts["total"]["trainable"] == parts["total"]["total"] - frozen


# conv3x3 s1 → conv3x3 s2 → maxpool 2 s2 → conv3x3 dilation 2 s1, by hand (rf, jump start at 1, 1):
#   conv3x3 s1:         rf = 1 + (3 − 1)·1 = 3,             jump = 1·1 = 1
#   conv3x3 s2:         rf = 3 + (3 − 1)·1 = 5,             jump = 1·2 = 2
#   maxpool 2 s2:       rf = 5 + (2 − 1)·2 = 7,             jump = 2·2 = 4
#   conv3x3 d2 s1:      k_eff = 2·(3 − 1) + 1 = 5, rf = 7 + (5 − 1)·4 = 23, jump = 4·1 = 4
LAYERS = [(3, 1, 1), (3, 2, 1), (2, 2, 1), (3, 1, 2)]


def test_receptive_field_recursion_by_hand():
    assert receptive_field(LAYERS) == (23, 4)
    assert receptive_field([]) == (1, 1)


def test_receptive_field_walk_on_a_sequential():
    net = nn.Sequential(nn.Conv2d(3, 8, 3, 1, 1), nn.ReLU(), nn.Conv2d(8, 8, 3, 2, 1), nn.BatchNorm2d(8),
                        nn.MaxPool2d(2, 2), nn.Conv2d(8, 4, 3, 1, padding=2, dilation=2))
    assert receptive_fields(net, (32, 32)) == [{"index": 0, "channels": 4, "stride": 4, "receptive_field": 23}]


class _Block(nn.Module):
    """A ResNet-style downsampling block with a 1×1 stride-2 shortcut, and an SE-style global gate."""

    def __init__(self) -> None:
        super().__init__()
        self.main = nn.Sequential(nn.Conv2d(3, 4, 3, 2, 1), nn.Conv2d(4, 4, 3, 1, 1))
        self.shortcut = nn.Conv2d(3, 4, 1, 2)
        self.gate = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(4, 4, 1), nn.Sigmoid())

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        y = self.main(x) + self.shortcut(x)
        return [y, y * self.gate(y), nn.functional.avg_pool2d(y, (3, 1), 1, (1, 0)),
                nn.functional.interpolate(y, scale_factor=2.0)]


def test_receptive_field_walk_takes_the_largest_branch():
    # main path: 3x3 s2 then 3x3 s1 → rf 1 + 2·1 = 3, jump 2, then 3 + 2·2 = 7; shortcut 1x1 s2: rf 1, jump 2.
    # A walk over the module list would also apply the shortcut's stride (jump 4); the data flow gives 7 and 2.
    # The global gate does not spread the field over the image; an asymmetric 3×1 pool: (7 + 2·2, 7) = (11, 7).
    # Upsampling is not modelled: that output says its numbers are unreliable.
    out = receptive_fields(_Block(), (16, 16))
    assert [(o["stride"], o["receptive_field"]) for o in out[:3]] == [(2, 7), (2, 7), (2, [11, 7])]
    assert ["note" in o for o in out] == [False, False, False, True]


def test_resnet50_c5_receptive_field(resnet50):
    # torchvision's ResNet-50 (stride on the bottleneck's 3x3 conv; 1x1 convs add nothing, shortcuts are shorter):
    #   stem conv7x7 s2: rf 7, jump 2; maxpool3x3 s2: 7 + 2·2 = 11, jump 4
    #   layer1, 3 blocks × one 3x3 at jump 4:        11 + 3·(2·4) = 35,  jump 4   (C2)
    #   layer2, 3x3 s2 at jump 4, then 3 at jump 8:  35 + 8 + 3·16 = 91, jump 8   (C3)
    #   layer3, 3x3 s2 at jump 8, then 5 at jump 16: 91 + 16 + 5·32 = 267, jump 16 (C4)
    #   layer4, 3x3 s2 at jump 16, then 2 at jump 32: 267 + 32 + 2·64 = 427, jump 32 (C5)
    out = receptive_fields(resnet50, (64, 64))
    assert [(o["index"], o["channels"], o["stride"], o["receptive_field"]) for o in out] == [
        (2, 512, 8, 91), (3, 1024, 16, 267), (4, 2048, 32, 427)]
    stem = [(7, 2, 1), (3, 2, 1)]
    c5 = stem + [(3, 1, 1)] * 3 + [(3, 2, 1)] + [(3, 1, 1)] * 3 + [(3, 2, 1)] + [(3, 1, 1)] * 5 + [(3, 2, 1)] + [
        (3, 1, 1)] * 2
    assert receptive_field(c5) == (427, 32)


def test_flops_of_one_convolution():
    flops, out = count_flops(nn.Conv2d(3, 8, 3, padding=1), torch.zeros(1, 3, 32, 32))
    assert out.shape == (1, 8, 32, 32)
    assert flops == 2 * 8 * 3 * 9 * 32 * 32  # a multiply-add = 2 FLOPs per output element per (in-channel, tap)


def test_component_flops_sum_to_the_total():
    det = tiny_detector().train()
    flops = component_flops(det, torch.randn(1, 3, 64, 64))
    assert all(flops[c] > 0 for c in ("backbone", "neck", "head"))
    assert flops["backbone"] + flops["neck"] + flops["head"] == flops["total"]
    assert det.training  # the counting ran in eval mode and restored the mode


def test_measure_latency_and_report():
    det = tiny_detector()
    lat = measure_latency(det, torch.randn(2, 3, 64, 64), runs=3, warmup=1)
    assert set(lat) == {"mean_ms", "median_ms", "p90_ms", "images_per_s"}
    assert 0 < lat["median_ms"] <= lat["p90_ms"] and lat["images_per_s"] == pytest.approx(2000 / lat["mean_ms"])
    with pytest.raises(ValueError):
        measure_latency(det, torch.randn(1, 3, 64, 64), runs=0)

    report = analyze(det, (64, 96), batch_size=2, latency_runs=1, warmup=0, device="cpu")
    assert report["components"] == {"backbone": "ResNet", "neck": "FPN", "head": "RetinaHead"}
    assert report["flops"]["total"]["gmacs"] == pytest.approx(report["flops"]["total"]["gflops"] / 2)
    assert [r["stride"] for r in report["receptive_fields"]] == [8, 16, 32]
    assert report["latency"]["runs"] == 1 and report["latency"]["precision"] == "fp32"
    table = format_table(report)
    for text in ("backbone", "neck", "head", "total", "GFLOPs", "receptive field", "435", "Latency, batch 2"):
        assert text in table
    assert "Latency" not in format_table({**report, "latency": None})  # latency_runs=0
