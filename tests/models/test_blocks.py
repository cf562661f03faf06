import pytest
import torch
from torch import nn

from framework.models.blocks import C2f, C3, Bottleneck, ConvNormAct, csp_block


def test_conv_norm_act_same_padding_stride_and_yolo_batchnorm():
    block = ConvNormAct(3, 8, kernel_size=3, stride=2)
    assert block.conv.bias is None and block.conv.padding == (1, 1)
    assert block.bn.eps == pytest.approx(1e-3) and block.bn.momentum == pytest.approx(0.1)
    assert isinstance(block.act, nn.SiLU)
    assert block(torch.randn(2, 3, 17, 32)).shape == (2, 8, 9, 16)
    linear = ConvNormAct(3, 8, act=None).eval()
    assert isinstance(linear.act, nn.Identity) and linear(torch.randn(1, 3, 4, 4)).min() < 0
    with pytest.raises(ValueError, match="act must be one of"):
        ConvNormAct(3, 8, act="gelu")


def _silence(block: ConvNormAct) -> None:
    """Make a ConvNormAct output exactly zero (BN scale and shift 0, SiLU(0) = 0)."""
    nn.init.zeros_(block.bn.weight)
    nn.init.zeros_(block.bn.bias)


def test_bottleneck_adds_the_shortcut_only_when_asked_and_widths_match():
    x = torch.randn(2, 8, 6, 6)
    with_shortcut = Bottleneck(8, 8, shortcut=True).eval()
    without = Bottleneck(8, 8, shortcut=False).eval()
    widening = Bottleneck(8, 16, shortcut=True)
    for b in (with_shortcut, without):
        _silence(b.cv2)
    torch.testing.assert_close(with_shortcut(x), x)
    assert without(x).abs().max() == 0
    assert not widening.add and widening(x).shape == (2, 16, 6, 6)
    assert Bottleneck(8, 8, kernel_sizes=(1, 3)).cv1.conv.kernel_size == (1, 1)


@pytest.mark.parametrize("cls,n", [(C3, 1), (C3, 3), (C2f, 1), (C2f, 3)])
def test_csp_blocks_shapes_and_gradients(cls, n):
    block = cls(16, 32, num_blocks=n)
    x = torch.randn(2, 16, 8, 10, requires_grad=True)
    y = block(x)
    assert y.shape == (2, 32, 8, 10)
    y.sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert len(block.blocks) == n


def test_c3_splits_and_c2f_keeps_every_intermediate_output():
    c3 = C3(64, 64, num_blocks=2)  # hidden 32: two branches of 32 fused by a 1x1 conv from 64
    assert c3.cv1.conv.out_channels == c3.cv2.conv.out_channels == 32 and c3.cv3.conv.in_channels == 64
    assert c3.blocks[0].cv1.conv.kernel_size == (1, 1) and c3.blocks[0].add  # YOLOv5: (1, 3) residual bottlenecks
    c2f = C2f(64, 64, num_blocks=3)  # hidden 32: cv1 to 64 = two halves, fuse (2 + 3) x 32
    assert c2f.cv1.conv.out_channels == 64 and c2f.cv2.conv.in_channels == 5 * 32
    assert c2f.blocks[0].cv1.conv.kernel_size == (3, 3) and not c2f.blocks[0].add  # neck default: no shortcut


def test_csp_block_names():
    assert csp_block("c3") is C3 and csp_block("c2f") is C2f
    with pytest.raises(ValueError, match="block must be one of"):
        csp_block("elan")
