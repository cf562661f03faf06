"""Frozen BatchNorm folded into the convolution before it: the same outputs and gradients as convolution then
BatchNorm, the same state-dict keys, and a folded weight that follows loaded weights and survives deepcopy."""
from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from framework.models.backbones.frozen_norm import FoldedBatchNorm2d, FrozenNormConv2d, fold_frozen_norms
from framework.models.backbones.resnet import ResNet


def conv_bn(seed: int = 0, bias: bool = False) -> nn.Sequential:
    torch.manual_seed(seed)
    block = nn.Sequential(nn.Conv2d(4, 6, 3, padding=1, bias=bias), nn.BatchNorm2d(6))
    bn = block[1]
    bn.running_mean.uniform_(-1, 1)
    bn.running_var.uniform_(0.5, 2)
    nn.init.uniform_(bn.weight, 0.5, 1.5)
    nn.init.uniform_(bn.bias, -1, 1)
    bn.eval().requires_grad_(False)
    return block


@pytest.mark.parametrize("bias", [False, True])
def test_folded_equals_convolution_then_batchnorm(bias):
    reference, folded = conv_bn(bias=bias), conv_bn(bias=bias)
    fold_frozen_norms([(folded[0], folded[1])])
    assert isinstance(folded[0], FrozenNormConv2d) and isinstance(folded[1], FoldedBatchNorm2d)
    assert folded.state_dict().keys() == reference.state_dict().keys()
    x = torch.randn(2, 4, 9, 9)
    expected, got = reference(x), folded(x)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    expected.square().sum().backward()
    got.square().sum().backward()
    torch.testing.assert_close(folded[0].weight.grad, reference[0].weight.grad, rtol=1e-4, atol=1e-5)
    if bias:
        torch.testing.assert_close(folded[0].bias.grad, reference[0].bias.grad, rtol=1e-4, atol=1e-5)


def test_cached_fold_follows_new_weights_and_survives_deepcopy():
    block = conv_bn()
    fold_frozen_norms([(block[0], block[1])])
    fold_frozen_norms([(block[0], block[1])])  # idempotent
    x = torch.randn(1, 4, 5, 5)
    with torch.no_grad():
        first = block(x)
        assert block[0]._cache is not None  # no gradient needed: the folded weight is kept
        other = conv_bn(seed=1)
        block.load_state_dict(other.state_dict())
        torch.testing.assert_close(block(x), other(x), rtol=1e-5, atol=1e-5)
        assert not torch.allclose(block(x), first)
        twin = copy.deepcopy(block)
        assert twin[0]._norm is twin[1]
        twin[1].running_mean.add_(1.0)
        torch.testing.assert_close(block(x), other(x), rtol=1e-5, atol=1e-5)
        assert not torch.allclose(twin(x), block(x))


def test_only_frozen_batchnorm_is_folded():
    block = nn.Sequential(nn.Conv2d(4, 6, 3), nn.BatchNorm2d(6))
    with pytest.raises(ValueError, match="frozen"):
        fold_frozen_norms([(block[0], block[1])])


def test_resnet_with_norm_frozen_folds_every_batchnorm_and_keeps_its_keys():
    frozen = ResNet(depth=50, out_indices=(2, 3, 4), frozen_stages=1, norm_frozen=True)
    plain = ResNet(depth=50, out_indices=(2, 3, 4), frozen_stages=1)
    norms = [m for m in frozen.modules() if isinstance(m, nn.BatchNorm2d)]
    assert norms and all(isinstance(m, FoldedBatchNorm2d) for m in norms)
    assert frozen.state_dict().keys() == plain.state_dict().keys()
